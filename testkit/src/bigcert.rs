//! Certificates far bigger than any real one, for the memory bounds of backfill
//! (issue 18 item 2): a template certificate (a fixture's DER) with its subject
//! alternative names replaced by a generated list of any length and its serial by
//! a given number. Built by editing DER with `ctlog`'s helpers; the signature is
//! left as it was (certwatch never checks it), so the result parses as X.509.

use crate::ctlog::{der_children, der_element, der_encode};

/// DER of subjectAltName's OID, 2.5.29.17.
const SAN_OID: &[u8] = &[6, 3, 0x55, 0x1D, 0x11];

/// `template` with `serial` as its serial number and `names` (dNSNames, in order)
/// as its subject alternative names, every other field kept.
pub fn with_names(
    template: &[u8],
    serial: u64,
    names: impl IntoIterator<Item = String>,
) -> Vec<u8> {
    let mut general_names = Vec::new();
    for name in names {
        general_names.extend(der_encode(0x82, name.as_bytes()));
    }
    let san_value = der_encode(0x04, &der_encode(0x30, &general_names));
    let (_, _, cert, _) = der_element(template);
    let parts = der_children(cert);
    let (_, _, tbs, _) = der_element(parts[0]);
    let children = der_children(tbs);
    let serial_at = usize::from(children[0][0] == 0xA0);
    let mut new_tbs = Vec::new();
    for (i, child) in children.iter().enumerate() {
        if i == serial_at {
            // A positive INTEGER: a leading zero byte keeps the top bit clear.
            let mut bytes = vec![0];
            bytes.extend_from_slice(&serial.to_be_bytes());
            new_tbs.extend(der_encode(0x02, &bytes));
        } else if child[0] == 0xA3 {
            let (_, _, seq, _) = der_element(child);
            let (_, _, list, _) = der_element(seq);
            let mut extensions = Vec::new();
            let mut replaced = false;
            for ext in der_children(list) {
                let (_, _, content, _) = der_element(ext);
                if content.starts_with(SAN_OID) {
                    replaced = true;
                    let mut san = SAN_OID.to_vec();
                    san.extend_from_slice(&san_value);
                    extensions.extend(der_encode(0x30, &san));
                } else {
                    extensions.extend_from_slice(ext);
                }
            }
            if !replaced {
                let mut san = SAN_OID.to_vec();
                san.extend_from_slice(&san_value);
                extensions.extend(der_encode(0x30, &san));
            }
            new_tbs.extend(der_encode(0xA3, &der_encode(0x30, &extensions)));
        } else {
            new_tbs.extend_from_slice(child);
        }
    }
    let mut out = der_encode(0x30, &new_tbs);
    for part in &parts[1..] {
        out.extend_from_slice(part);
    }
    der_encode(0x30, &out)
}
