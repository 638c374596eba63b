//! Outbound HTTP: the one place the ureq agents certwatch sends requests with are
//! configured (webhook deliveries behind the SSRF filter, CT log fetches, the log
//! list), and the `Retry-After` header both honour. Pure construction and parsing;
//! the agents run on the threads that use them (`deliver-N`, `backfill`).
//!
//! Every agent: certwatch's User-Agent, a whole-request timeout, status codes
//! returned as values rather than errors, and no redirects followed (a 3xx is an
//! answer like any other) except for the log list (`list_agent`).

use crate::clock::unix_now;
use crate::ssrf::{self, FilteringResolver};
use std::time::Duration;

/// `certwatch/<version>`, sent with every request.
pub const USER_AGENT: &str = concat!("certwatch/", env!("CARGO_PKG_VERSION"));

/// The longest `Retry-After` honoured.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);

/// Each pooled connection's buffers (ureq's defaults are 128 KB each, kept while
/// the connection idles in the pool: 10 MB for 40 tailed logs). The input buffer
/// grows for a response header larger than this, up to ureq's 64 KB header limit.
const INPUT_BUFFER: usize = 16 << 10;
const OUTPUT_BUFFER: usize = 8 << 10;

/// The settings every agent shares, with `user_agent` and `timeout`; redirects are
/// not followed unless `redirects` allows some.
fn base_config(
    user_agent: &str,
    timeout: Duration,
    proxies: bool,
    redirects: u32,
) -> ureq::config::Config {
    let builder = ureq::Agent::config_builder();
    let builder = if proxies {
        builder
    } else {
        builder.proxy(None)
    };
    builder
        .timeout_global(Some(timeout))
        .max_redirects(redirects)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .user_agent(user_agent)
        .input_buffer_size(INPUT_BUFFER)
        .output_buffer_size(OUTPUT_BUFFER)
        .build()
}

/// The agent webhook deliveries use: names resolved through the SSRF filter
/// (which, with `deny_private`, only hands out vetted addresses; environment
/// proxies are then not used, since a proxy resolves targets itself).
pub fn webhook_agent(timeout: Duration, deny_private: bool, lookup: ssrf::Lookup) -> ureq::Agent {
    ssrf::agent(
        base_config(USER_AGENT, timeout, !deny_private, 0),
        FilteringResolver::new(deny_private, lookup),
    )
}

/// An agent without the SSRF filter, with `user_agent`: for a CT log (certwatch's
/// User-Agent plus the operator's contact when set), or the healthcheck client.
pub fn plain_agent(user_agent: &str, timeout: Duration) -> ureq::Agent {
    ssrf::agent(
        base_config(user_agent, timeout, true, 0),
        caching_resolver(),
    )
}

/// How long a looked-up host's addresses are used before it is looked up again.
pub const DNS_KEEP: Duration = Duration::from_secs(60);

/// The resolver of the agents without the SSRF filter: every address allowed,
/// answers kept for [`DNS_KEEP`]. (ureq's own resolver, with a timeout set, looks
/// the host up on a new thread for every request, even a pooled one's.)
fn caching_resolver() -> FilteringResolver {
    FilteringResolver::new(false, ssrf::system_lookup()).caching(DNS_KEEP)
}

/// The agent that reads the trusted log list (`CT_LOG_LIST`) from a URL: like
/// `plain_agent`, but following up to 5 redirects, as a published list may move.
pub fn list_agent(timeout: Duration) -> ureq::Agent {
    ssrf::agent(
        base_config(USER_AGENT, timeout, true, 5),
        caching_resolver(),
    )
}

/// `Retry-After` as delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate_to_unix(value)?;
    Some(Duration::from_secs(
        u64::try_from(when - unix_now()).unwrap_or(0),
    ))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to unix seconds.
fn httpdate_to_unix(value: &str) -> Option<i64> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    let days = crate::clock::days_from_civil(year, month, day);
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_both_spellings() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            httpdate_to_unix("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
