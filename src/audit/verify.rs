//! Checks the audit chains: every row's hash against its content, every row's link to the row
//! before it, positions without gaps, and each chain's end against its recorded head.
//!
//! The canonical bytes are rebuilt here from the columns, independently of the database's
//! `homeward_audit_canonical`, so a row edited together with a recomputed hash in the database
//! is still caught by the next row's link, and a mistake in either implementation shows as a
//! mismatch. The format is in docs/audit.md.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio_postgres::{GenericClient, Row};

/// The first row that does not check, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The row's `id` (`None` when the chain's end is missing rows).
    pub id: Option<i64>,
    pub chain: i32,
    pub seq: i64,
    pub reason: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.id {
            Some(id) => write!(
                f,
                "row {id} (chain {}, seq {}): {}",
                self.chain, self.seq, self.reason
            ),
            None => write!(
                f,
                "chain {} after seq {}: {}",
                self.chain, self.seq, self.reason
            ),
        }
    }
}

/// What [`verify`] checked.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub rows: u64,
    pub chains: u64,
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    /// Each chain's last position and hash (hex), for an auditor to note and compare later.
    pub heads: Vec<(i32, i64, String)>,
    pub broken: Option<Broken>,
}

/// One row's canonical bytes (docs/audit.md, "Format").
pub fn canonical(row: &AuditRow) -> Vec<u8> {
    let fields: [String; 15] = [
        "homeward-audit-v1".into(),
        row.chain.to_string(),
        row.seq.to_string(),
        row.at.timestamp_micros().to_string(),
        row.actor_kind.clone(),
        row.actor.clone(),
        opt(row.token_id),
        opt(row.actor_org),
        opt(row.organisation_id),
        row.action.clone(),
        row.object_type.clone(),
        row.object_id.clone(),
        row.change.clone(),
        row.request_id.clone().unwrap_or_default(),
        hex::encode(&row.prev_hash),
    ];
    let mut out = Vec::new();
    for f in fields {
        out.extend_from_slice(f.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(f.as_bytes());
        out.push(b'\n');
    }
    out
}

fn opt(v: Option<i32>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// A row of `audit_log`, as stored.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub id: i64,
    pub chain: i32,
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor_kind: String,
    pub actor: String,
    pub token_id: Option<i32>,
    pub actor_org: Option<i32>,
    pub organisation_id: Option<i32>,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub change: String,
    pub request_id: Option<String>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// The columns [`AuditRow::from_row`] reads, in order.
pub const COLUMNS: &str = "id, chain, seq, at, actor_kind, actor, token_id, actor_org, \
    organisation_id, action, object_type, object_id, change, request_id, prev_hash, hash";

impl AuditRow {
    pub fn from_row(r: &Row) -> Self {
        Self {
            id: r.get(0),
            chain: r.get(1),
            seq: r.get(2),
            at: r.get(3),
            actor_kind: r.get(4),
            actor: r.get(5),
            token_id: r.get(6),
            actor_org: r.get(7),
            organisation_id: r.get(8),
            action: r.get(9),
            object_type: r.get(10),
            object_id: r.get(11),
            change: r.get(12),
            request_id: r.get(13),
            prev_hash: r.get(14),
            hash: r.get(15),
        }
    }
}

const BATCH: i64 = 5_000;

/// Walks every chain (or only `only_chain`) and stops at the first row that does not check.
/// `progress` is told each chain's rows as they are checked.
pub async fn verify(
    c: &impl GenericClient,
    only_chain: Option<i32>,
    mut progress: impl FnMut(i32, u64),
) -> Result<VerifyReport, tokio_postgres::Error> {
    let chains: Vec<i32> = c
        .query(
            "SELECT chain FROM audit_heads WHERE $1::int IS NULL OR chain = $1
             UNION SELECT DISTINCT chain FROM audit_log WHERE $1::int IS NULL OR chain = $1
             ORDER BY 1",
            &[&only_chain],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut report = VerifyReport::default();
    for chain in chains {
        report.chains += 1;
        let mut expected_seq = 1_i64;
        let mut prev_hash = vec![0_u8; 32];
        let mut rows_in_chain = 0_u64;
        loop {
            let rows = c
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM audit_log WHERE chain = $1 AND seq >= $2
                          ORDER BY seq, id LIMIT $3"
                    ),
                    &[&chain, &expected_seq, &BATCH],
                )
                .await?;
            let n = rows.len();
            for r in &rows {
                let row = AuditRow::from_row(r);
                if let Some(reason) = check(&row, expected_seq, &prev_hash) {
                    report.broken = Some(Broken {
                        id: Some(row.id),
                        chain,
                        seq: row.seq,
                        reason,
                    });
                    return Ok(report);
                }
                report.rows += 1;
                rows_in_chain += 1;
                report.first = Some(report.first.map_or(row.at, |f| f.min(row.at)));
                report.last = Some(report.last.map_or(row.at, |l| l.max(row.at)));
                expected_seq += 1;
                prev_hash = row.hash;
            }
            progress(chain, rows_in_chain);
            if (n as i64) < BATCH {
                break;
            }
        }
        let head = c
            .query_opt(
                "SELECT seq, hash FROM audit_heads WHERE chain = $1",
                &[&chain],
            )
            .await?;
        let last_seq = expected_seq - 1;
        let (head_seq, head_hash): (i64, Vec<u8>) = match head {
            Some(h) => (h.get(0), h.get(1)),
            None => (0, vec![0; 32]),
        };
        if head_seq != last_seq || head_hash != prev_hash {
            report.broken = Some(Broken {
                id: None,
                chain,
                seq: last_seq,
                reason: format!(
                    "the chain's head is seq {head_seq} but its rows end at seq {last_seq}: \
                     rows at the end were deleted, or the head was altered"
                ),
            });
            return Ok(report);
        }
        report
            .heads
            .push((chain, last_seq, hex::encode(&prev_hash)));
    }
    Ok(report)
}

/// Why `row` does not check, if it does not.
fn check(row: &AuditRow, expected_seq: i64, prev_hash: &[u8]) -> Option<String> {
    if row.seq != expected_seq {
        return Some(format!(
            "seq {} where {expected_seq} was expected: a row before it was deleted or moved",
            row.seq
        ));
    }
    if row.chain != row.organisation_id.unwrap_or(0) {
        return Some(format!(
            "in chain {} but belongs to organisation {:?}",
            row.chain, row.organisation_id
        ));
    }
    if row.prev_hash != prev_hash {
        return Some(
            "its link (prev_hash) is not the hash of the row before it: a row was deleted, \
             reordered or rewritten"
                .into(),
        );
    }
    let digest = Sha256::digest(canonical(row));
    if digest.as_slice() != row.hash.as_slice() {
        return Some("its hash does not match its content: the row was edited or moved".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> AuditRow {
        AuditRow {
            id: 1,
            chain: 3,
            seq: 1,
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            actor_kind: "user".into(),
            actor: "7".into(),
            token_id: None,
            actor_org: Some(3),
            organisation_id: Some(3),
            action: "alarm.acknowledge".into(),
            object_type: "alarm".into(),
            object_id: "42".into(),
            change: "{\"é\":1}".into(),
            request_id: Some("r-1".into()),
            prev_hash: vec![0; 32],
            hash: vec![],
        }
    }

    #[test]
    fn canonical_bytes_by_hand() {
        let bytes = canonical(&row());
        let text = String::from_utf8(bytes).unwrap();
        let zeros = "0".repeat(64);
        // Lengths are in bytes: "{\"é\":1}" is 8 bytes, é being two.
        assert_eq!(
            text,
            format!(
                "17:homeward-audit-v1\n1:3\n1:1\n16:1700000000123456\n4:user\n1:7\n0:\n1:3\n1:3\n\
                 17:alarm.acknowledge\n5:alarm\n2:42\n8:{{\"é\":1}}\n3:r-1\n64:{zeros}\n"
            )
        );
    }

    #[test]
    fn a_row_checks_only_with_its_own_hash_and_link() {
        let mut r = row();
        r.hash = Sha256::digest(canonical(&r)).to_vec();
        assert_eq!(check(&r, 1, &[0; 32]), None);
        assert!(check(&r, 2, &[0; 32]).unwrap().contains("seq 1 where 2"));
        assert!(check(&r, 1, &[1; 32]).unwrap().contains("link"));
        let mut edited = r.clone();
        edited.object_id = "43".into();
        assert!(check(&edited, 1, &[0; 32]).unwrap().contains("edited"));
    }
}
