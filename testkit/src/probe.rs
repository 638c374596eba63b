//! Asking a running service: HTTP requests (`request`), its `/metrics` exposition
//! (`scrape`), one sample of it (`metric_value`) and the sum of a metric's samples
//! (`metric_sum`).

use std::net::SocketAddr;
use std::time::Duration;

/// An HTTP request with `method`: (status, body); panics if there is no answer.
pub fn request(url: &str, method: &str) -> (u16, String) {
    try_request(url, method).unwrap_or_else(|e| panic!("{e}"))
}

/// An HTTP request with `method` (`GET`, `POST` with an empty body, `DELETE`), any
/// status, 5 s timeout: (status, body).
pub fn try_request(url: &str, method: &str) -> Result<(u16, String), String> {
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
    .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Ok((status, body))
}

/// The value of one series of a Prometheus exposition, e.g.
/// `certwatch_alerts_total{severity="info"}`.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

/// The sum of every sample of the metric `name` (all its label values), e.g.
/// `certwatch_ct_messages_total`; 0 when it has none.
pub fn metric_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let metric = series.split_once('{').map_or(series, |(m, _)| m);
            (metric == name)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// `GET http://addr/metrics`: the exposition.
pub fn scrape(addr: SocketAddr) -> Result<String, String> {
    try_request(&format!("http://{addr}/metrics"), "GET").map(|(_, body)| body)
}
