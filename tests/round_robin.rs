//! nginx's smooth weighted round robin: the exact sequences nginx 1.22 gives.

use upstream::{Backend, Key, ManualClock, Pool, RoundRobin};

fn pool(weights: &[u32]) -> Pool<RoundRobin> {
    let names = ["a", "b", "c", "d", "e"];
    let backends = weights
        .iter()
        .zip(names)
        .map(|(&w, n)| Backend::new(n).weight(w));
    Pool::builder(RoundRobin)
        .clock(ManualClock::new(0))
        .build(backends.collect::<Vec<_>>())
        .unwrap()
}

fn sequence(pool: &Pool<RoundRobin>, n: usize) -> String {
    (0..n)
        .map(|_| pool.pick(Key::None).unwrap().id().to_string())
        .collect()
}

#[test]
fn weights_5_1_1() {
    assert_eq!(sequence(&pool(&[5, 1, 1]), 14), "aabacaaaabacaa");
}

#[test]
fn weights_21_11() {
    assert_eq!(
        sequence(&pool(&[21, 11]), 32),
        "abaabaabaabaabaababaabaabaabaaba"
    );
}

#[test]
fn weights_100_10_put_b_at_6_and_17() {
    let s = sequence(&pool(&[100, 10]), 20);
    let at: Vec<usize> = s
        .char_indices()
        .filter(|&(_, c)| c == 'b')
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(at, [6, 17]);
}

#[test]
fn equal_weights_rotate() {
    assert_eq!(sequence(&pool(&[1, 1, 1]), 7), "abcabca");
    assert_eq!(sequence(&pool(&[4, 4]), 4), "abab");
}

#[test]
fn a_down_backend_shares_out_in_proportion() {
    let p = pool(&[1, 1, 1, 1]);
    p.set_down("b", true).unwrap();
    let s = sequence(&p, 300);
    let count = |c| s.chars().filter(|&x| x == c).count();
    assert_eq!(
        (count('a'), count('b'), count('c'), count('d')),
        (100, 0, 100, 100)
    );
}

#[test]
fn a_failed_backend_shares_out_in_proportion() {
    let p = pool(&[1, 1, 1, 1]);
    // Fail "a" out: its share must not all fall on its neighbour "b".
    let mut first = p.request(Key::None);
    let pick = first.next().unwrap();
    assert_eq!(pick.id(), "a");
    pick.failure();
    let s = sequence(&p, 300);
    let count = |c| s.chars().filter(|&x| x == c).count();
    assert_eq!(
        (count('a'), count('b'), count('c'), count('d')),
        (0, 100, 100, 100)
    );
}

#[test]
fn rotation_survives_a_swap_to_the_same_set() {
    let p = pool(&[1, 1, 1, 1]);
    let mut seen = String::new();
    for _ in 0..8 {
        seen.push_str(p.pick(Key::None).unwrap().id());
        p.replace(p.backend_set()).unwrap();
    }
    assert_eq!(seen, "abcdabcd");
}

#[test]
fn down_in_config_is_left_out_like_nginx() {
    // nginx skips a down server in its loop, so the others keep their order.
    let p = pool(&[5, 1, 1]);
    p.set_down("b", true).unwrap();
    assert_eq!(sequence(&p, 6), "aaacaa");
}

#[test]
fn panic_mode_keeps_rotating_when_everything_failed_out() {
    use upstream::AllDown;
    let p = Pool::builder(RoundRobin)
        .clock(ManualClock::new(0))
        .all_down(AllDown::panic(50))
        .build(vec![Backend::new("a"), Backend::new("b")])
        .unwrap();
    for i in 0..2 {
        let mut r = p.request(Key::None);
        r.take(i).unwrap().failure();
    }
    assert_eq!(sequence(&p, 6), "ababab");
}
