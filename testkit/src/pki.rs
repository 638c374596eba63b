//! Real X.509 certificates made with rcgen, for the examples and benchmarks that
//! need certificates no fixture holds: a CA, and leaves it signs for one name.

/// A self-signed CA with its key.
pub type Ca = rcgen::CertifiedIssuer<'static, rcgen::KeyPair>;

/// A self-signed CA (no path length limit) named `organization` / `common_name`.
pub fn ca(organization: &str, common_name: &str) -> Result<Ca, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, organization);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    rcgen::CertifiedIssuer::self_signed(params, key).map_err(|e| e.to_string())
}

/// The DER of a certificate for `name` (its SAN and CN) signed by `ca`, valid
/// 2026-01-01 to 2026-04-01, with this serial (rcgen's random one when `None`).
pub fn leaf(ca: &Ca, name: &str, serial: Option<u64>) -> Result<Vec<u8>, String> {
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.serial_number = serial.map(Into::into);
    params.not_before = rcgen::date_time_ymd(2026, 1, 1);
    params.not_after = rcgen::date_time_ymd(2026, 4, 1);
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    Ok(params
        .signed_by(&key, &**ca)
        .map_err(|e| e.to_string())?
        .der()
        .to_vec())
}
