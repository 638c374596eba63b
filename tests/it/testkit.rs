//! The test kit's own checks, where a kit helper is itself worth testing: the
//! Standard Webhooks verifier, and the deadline of child processes (`kit::child`).

use crate::kit::standard_webhooks::secret_key;
use base64::Engine;
use hmac::{KeyInit, Mac};

#[test]
fn the_reference_example_verifies_without_its_timestamp_check() {
    // The Standard Webhooks libraries' own example: key, id, timestamp, body, signature.
    let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(br#"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}"#);
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()),
        "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    assert_eq!(
        secret_key("whsec_bmV3LWtleQ"),
        secret_key("whsec_bmV3LWtleQ==")
    );
    assert_eq!(secret_key("whsec_-_8="), None);
}

#[test]
fn a_child_past_its_deadline_is_killed_and_fails_naming_its_command() {
    use crate::kit::child::Child;
    use std::time::Duration;
    let mut child = Child::spawn(std::process::Command::new("sleep").arg("30"));
    let pid = child.id();
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        child.wait(Duration::from_millis(200))
    }));
    let message = match failed {
        Ok(status) => panic!("waited past the deadline: {status:?}"),
        Err(panic) => panic.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(
        message.contains("`sleep 30`") && message.contains("killed"),
        "{message}"
    );
    // Killed and reaped: no such process any more.
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "sleep {pid} still runs"
    );
}

#[test]
fn a_child_run_to_its_end_gives_its_status_and_output_and_its_stderr_lines() {
    use crate::kit::child::{self, Child};
    use std::time::Duration;
    let out = child::run(
        std::process::Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    let (mut sh, lines) = Child::spawn_with_stderr_lines(
        std::process::Command::new("sh").args(["-c", "echo one >&2; echo two >&2"]),
    );
    assert_eq!(sh.wait(Duration::from_secs(10)).code(), Some(0));
    assert_eq!(lines.iter().collect::<Vec<_>>(), ["one", "two"]);
}
