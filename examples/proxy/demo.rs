//! The self-contained demonstration.

pub async fn run() -> Result<(), String> {
    Ok(())
}
