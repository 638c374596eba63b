//! schema.sql: idempotent, and upgrades the predecessor's `public.alerts` in place.

use crate::kit::TestDb;
use std::time::Duration;

const SCHEMA: &str = include_str!("../../schema.sql");

#[test]
fn schema_applies_twice() {
    let db = TestDb::new();
    db.execute(SCHEMA);
    db.execute(SCHEMA);
    let n: i64 = db
        .client()
        .query_one("SELECT count(*) FROM public.alerts", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[test]
fn the_predecessor_alerts_table_is_upgraded_without_losing_rows() {
    let db = TestDb::new();
    db.execute(
        "DROP TABLE public.alerts CASCADE;
         CREATE TABLE public.alerts (
             id serial PRIMARY KEY,
             fingerprint text NOT NULL,
             sans jsonb NOT NULL,
             matched jsonb NOT NULL,
             issuer text,
             seen_at bigint NOT NULL,
             delivered boolean DEFAULT false,
             severity text NOT NULL);
         INSERT INTO public.alerts (fingerprint, sans, matched, issuer, seen_at, delivered, severity) VALUES
             ('AA:BB:CC', '[\"a.example.com\", \"b.example.com\"]', '[\"a.example.com\"]', 'Let''s Encrypt', 1761918776, true, 'info'),
             ('DD:EE:FF', '[\"c.example.com\"]', '[\"c.example.com\"]', NULL, 1761918777, false, 'suspicious');",
    );
    db.execute(SCHEMA);
    db.execute(SCHEMA);
    let rows = db
        .client()
        .query(
            "SELECT fingerprint, fingerprint_sha1, all_sans, matched_sans, issuer_o,
                    extract(epoch from seen_at)::bigint, extract(epoch from created_at)::bigint,
                    delivered, severity, sans::text
               FROM public.alerts ORDER BY id",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 2);
    let first = &rows[0];
    assert_eq!(first.get::<_, String>(0), "AA:BB:CC", "old column kept");
    assert_eq!(first.get::<_, Option<String>>(1).as_deref(), Some("aabbcc"));
    assert_eq!(
        first.get::<_, Vec<String>>(2),
        vec!["a.example.com", "b.example.com"]
    );
    assert_eq!(first.get::<_, Vec<String>>(3), vec!["a.example.com"]);
    assert_eq!(
        first.get::<_, Option<String>>(4).as_deref(),
        Some("Let's Encrypt")
    );
    assert_eq!(first.get::<_, i64>(5), 1_761_918_776);
    assert_eq!(
        first.get::<_, i64>(6),
        1_761_918_776,
        "created_at taken from seen_at"
    );
    assert_eq!(first.get::<_, Option<bool>>(7), Some(true));
    assert_eq!(first.get::<_, String>(8), "info");
    assert!(
        first.get::<_, String>(9).contains("b.example.com"),
        "old jsonb kept"
    );
    assert_eq!(rows[1].get::<_, String>(8), "suspicious");
    // New rows can be written next to the old ones.
    db.execute(
        "INSERT INTO public.alerts (issuance_key, delivery_id, severity) VALUES ('k', 'd', 'info');
         INSERT INTO public.alerts (issuance_key, delivery_id, severity) VALUES ('k2', 'd2', 'info');",
    );
}

/// Each way a connection fails is named by its cause, as the operator would fix it.
#[test]
fn connection_failures_are_named_by_their_cause() {
    use certwatch::store::ConnectCause;
    let cause = |dsn: &str| match postgres::Client::connect(dsn, postgres::NoTls) {
        Ok(_) => panic!("{dsn} connected"),
        Err(e) => ConnectCause::of(&e),
    };
    use crate::kit::db::{admin_dsn, dsn_with_dbname, dsn_with_login};
    let missing = format!("certwatch_missing_{}", std::process::id());
    match cause(&dsn_with_dbname(&admin_dsn(), &missing)) {
        ConnectCause::DatabaseMissing(m) => assert!(m.contains(&missing), "{m}"),
        other => panic!("{other:?}"),
    }
    let role = format!("certwatch_nobody_{}", std::process::id());
    match cause(&dsn_with_login(&admin_dsn(), &role, "pw")) {
        ConnectCause::AuthFailed(m) => assert!(m.contains(&role), "{m}"),
        other => panic!("{other:?}"),
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let refused = cause(&format!("postgresql://postgres@127.0.0.1:{port}/x"));
    assert!(matches!(refused, ConnectCause::Refused(_)), "{refused:?}");
    assert!(
        refused.to_string().starts_with("connection refused"),
        "{refused}"
    );
}

/// A row the server refuses for its data is told apart from a database that is
/// down or refusing the role: only the first is dropped from the held alerts
/// (so it never blocks the rest), the second keeps them all for later.
#[test]
fn a_row_the_server_refuses_is_told_apart_from_an_unavailable_database() {
    use certwatch::store::StoreError;
    let db = crate::kit::TestDb::new();
    let mut client = db.client();
    let mut refused = |sql: &str, text: &str| match client.query(sql, &[&text]) {
        Ok(_) => panic!("{sql} succeeded"),
        Err(e) => StoreError::Db(e).rejects_the_row(),
    };
    assert!(refused("SELECT $1::text", "a\0b"), "NUL: data exception");
    assert!(
        refused("SELECT to_timestamp($1::text::float8)", "1e15"),
        "out of range: data exception"
    );
    assert!(
        !refused("SELECT count(*) FROM no_such_table WHERE $1 = ''", ""),
        "not the row's fault"
    );
}

#[test]
fn backfill_claims_leave_out_what_another_replica_holds_or_finished() {
    use certwatch::store::LogPosition;
    let db = TestDb::new();
    let store = |name: &str| {
        let s = certwatch::store::Store::new(db.dsn(), 2)
            .expect("store")
            .with_instance(name);
        s.ensure_schema().expect("schema");
        s
    };
    let (a, b) = (store("a:1"), store("b:1"));
    // The store claims what coverage's rule leaves of the range.
    let claim = |s: &certwatch::store::Store, log: &str, range, lease| {
        s.claim_range(log, range, lease, certwatch::coverage::claims::subtract)
    };
    let lease = Duration::from_secs(600);
    assert_eq!(claim(&a, "log", 0..100, lease).unwrap(), vec![0..100]);
    // B wants an overlapping range: only the part A does not hold.
    assert_eq!(claim(&b, "log", 50..150, lease).unwrap(), vec![100..150]);
    assert_eq!(claim(&b, "other", 50..150, lease).unwrap(), vec![50..150]);
    // A finished: still left out for B; A itself may claim its range again.
    a.finish_claim("log", 0).unwrap();
    assert_eq!(
        claim(&b, "log", 0..40, lease).unwrap(),
        Vec::<std::ops::Range<u64>>::new()
    );
    assert_eq!(claim(&a, "log", 0..40, lease).unwrap(), vec![0..40]);
    // A claim whose lease ran out (its replica died) is taken over.
    assert_eq!(
        claim(&a, "log", 200..300, Duration::ZERO).unwrap(),
        vec![200..300]
    );
    assert_eq!(claim(&b, "log", 150..320, lease).unwrap(), vec![150..320]);
    // Positions only move forward.
    let at = |position| LogPosition {
        log_id: "id".into(),
        log_url: "https://ct.example/log".into(),
        position,
    };
    a.save_positions(&[at(500)]).unwrap();
    b.save_positions(&[at(400)]).unwrap();
    assert_eq!(a.load_positions().unwrap(), vec![at(500)]);
}
