//! The test kit's own checks, where a kit helper is itself worth testing.

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
