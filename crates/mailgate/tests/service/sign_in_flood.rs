//! Sign-in under attack, against a real `mailgate` process: concurrent guesses are counted before
//! they are verified, memory stays bounded however many addresses guess, and the admin's own
//! browser still gets in.

use std::process::Stdio;

use reqwest::StatusCode;

use crate::support::*;

const FLOOD: usize = 200;

/// `MAX_FAILURES` per address per window.
const ADDRESS_BUDGET: u64 = 5;

async fn metric(t: &TestApp, name: &str) -> u64 {
    let text = t.get("/metrics").await.body;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

/// Kilobytes from a /proc/<pid>/status line such as `VmHWM:   81234 kB`.
fn proc_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{field} in {status}"))
}

/// `FLOOD` wrong passwords at once, each from `address(i)` as the trusted proxy forwards it,
/// each for `email(i)`; the statuses, in no order.
async fn flood(
    t: &TestApp,
    csrf: &str,
    address: impl Fn(usize) -> String,
    email: impl Fn(usize) -> String,
) -> Vec<StatusCode> {
    let guest = browser();
    let attempts = (0..FLOOD).map(|i| {
        let request = guest
            .post(t.url("/login"))
            .header("cookie", format!("mailgate_csrf={csrf}"))
            .header("x-forwarded-for", address(i))
            .form(&[
                ("_csrf", csrf),
                ("email", email(i).as_str()),
                ("password", "not the password"),
            ]);
        async move { request.send().await.unwrap().status() }
    });
    futures_join_all(attempts).await
}

async fn futures_join_all<F: std::future::Future<Output = StatusCode> + Send + 'static>(
    attempts: impl Iterator<Item = F>,
) -> Vec<StatusCode> {
    let tasks: Vec<_> = attempts.map(tokio::spawn).collect();
    let mut statuses = Vec::with_capacity(tasks.len());
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses
}

#[tokio::test]
async fn a_flood_of_wrong_passwords_is_capped_and_the_admins_browser_still_signs_in() {
    let mut t = spawn(Db::Sqlite).await;
    // The admin's browser signs in once (through the setup link), then signs out: it keeps only
    // its record of that sign-in.
    t.create_admin().await;
    t.submit("/logout", &[]).await;
    t.stop_service().await;
    let mut env = t.process_env();
    env.push(("MAILGATE_TRUSTED_PROXIES", "127.0.0.1".into()));
    let child = serve(&env, Stdio::null()).await;
    let pid = child.id();
    let csrf = hidden(&t.get("/login").await.body, "_csrf").unwrap();
    let before = metric(&t, "mailgate_sign_in_attempts_total{result=\"verified\"}").await;

    // One address guessing the admin's password 200 times at once.
    let one = flood(&t, &csrf, |_| "198.51.100.7".into(), |_| ADMIN.into()).await;
    let verified =
        metric(&t, "mailgate_sign_in_attempts_total{result=\"verified\"}").await - before;
    assert!(verified <= ADDRESS_BUDGET, "{verified} verified");
    assert!(verified >= 1, "the limits let the first guess through");
    let wrong = one
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(
        wrong as u64, verified,
        "every verified guess was told it was wrong"
    );
    assert!(
        one.iter().all(|s| [
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE
        ]
        .contains(s)),
        "{one:?}"
    );

    // 200 addresses, 200 accounts, all at once: only the cap on concurrent verifies holds them.
    let rss_before = proc_kb(pid, "VmRSS:");
    let many = flood(
        &t,
        &csrf,
        |i| format!("203.0.113.{}, 10.9.{}.{}", i % 7, i / 250, i % 250),
        |i| format!("guess{i}@example.com"),
    )
    .await;
    let busy = many
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert!(busy > 0, "the cap answered some at once: {many:?}");
    let peak_mb = proc_kb(pid, "VmHWM:") / 1024;
    eprintln!(
        "flood: {verified} of {FLOOD} verified from one address; {busy} of {FLOOD} busy from many; RSS {} MB before, peak {peak_mb} MB",
        rss_before / 1024
    );
    assert!(
        peak_mb < 250,
        "peak RSS {peak_mb} MB (it was {} MB before the flood)",
        rss_before / 1024
    );

    // The attacker spends the rest of that address's budget, one guess at a time…
    let (fresh, fresh_csrf) = t.guest_at_login().await;
    let from_attacker = |password: &'static str| {
        fresh
            .post(t.url("/login"))
            .header("x-forwarded-for", "198.51.100.7")
            .form(&[
                ("_csrf", fresh_csrf.as_str()),
                ("email", ADMIN),
                ("password", password),
            ])
            .send()
    };
    let mut spent = false;
    for _ in 0..=ADDRESS_BUDGET {
        let status = from_attacker("another guess").await.unwrap().status();
        assert_ne!(status, StatusCode::SEE_OTHER);
        if status == StatusCode::TOO_MANY_REQUESTS {
            spent = true;
            break;
        }
    }
    assert!(spent, "the address's budget runs out");
    let stranger = from_attacker(ADMIN_PASSWORD).await.unwrap();
    assert_eq!(
        stranger.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a browser with no record waits"
    );
    assert!(stranger.headers().contains_key("retry-after"));

    // …but the admin's browser, from that same address, signs in.
    let page = t.get("/login").await;
    let admin_csrf = hidden(&page.body, "_csrf").unwrap();
    let signed_in = t
        .http
        .post(t.url("/login"))
        .header("x-forwarded-for", "198.51.100.7")
        .form(&[
            ("_csrf", admin_csrf.as_str()),
            ("email", ADMIN),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert!(t.visit("/settings").await.has("Custom Email Servers"));

    stop(child).await;
    t.finish().await;
}
