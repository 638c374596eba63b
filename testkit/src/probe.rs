//! Asking a running service: HTTP requests (`request`) and one sample of a `/metrics`
//! exposition (`metric_value`).

use std::time::Duration;

/// An HTTP request with `method`: (status, body).
pub fn request(url: &str, method: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut response = match method {
        "GET" => agent.get(url).call(),
        "POST" => agent.post(url).send(&b""[..]),
        "DELETE" => agent.delete(url).call(),
        other => panic!("unsupported method {other}"),
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, body)
}

pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}
