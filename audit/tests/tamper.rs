//! Tamper tests on logs written through the real sequencer: every kind of damage is detected
//! and named, and clean logs, proofs, exports and key rotations verify.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use portcullis_audit::cli::{run, AuditCommand, ExitCodeLike};
use portcullis_audit::export::{export, verify_export, ExportFormat};
use portcullis_audit::note::{Signer, VerifierKey};
use portcullis_audit::sled_store::SledStore;
use portcullis_audit::store::{LogStore, StoreError};
use portcullis_audit::verify::{verify_store, Problem, VerifyOptions};
use portcullis_audit::{
    read, AuditLog, AuditLogConfig, AuditSink, Category, Event, Outcome, Recorded, STORE_DIR,
};

fn config() -> AuditLogConfig {
    AuditLogConfig {
        checkpoint_every: 16,
        origin: Some("test.example/audit".into()),
        ..AuditLogConfig::default()
    }
}

fn event(i: u64) -> Event {
    let outcome = if i % 3 == 0 {
        Outcome::Deny
    } else {
        Outcome::Allow
    };
    Event::new(Category::Authz, format!("kafka.Produce.{i}"), outcome)
        .principal(format!("user{}", i % 4))
        .client_addr("192.0.2.7:40000")
        .resource("topic", format!("t{}", i % 5))
}

/// Writes `n` events (every 10th through the sync path) and shuts down.
async fn write(dir: &Path, n: u64) {
    let log = AuditLog::open(dir, &config()).unwrap();
    let base = log.stats().appended;
    for i in 0..n {
        if i % 10 == 0 {
            // Durable events are written ahead of queued data-path ones: wait for those
            // first, so entry numbers follow emission order (tests pick entries by number).
            while log.stats().appended - base < i {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            let ev = Event::new(Category::Authn, "sasl.SCRAM-SHA-512", Outcome::Success)
                .principal(format!("user{}", i % 4));
            assert!(matches!(
                log.record(ev).await.unwrap(),
                Recorded::Durable(_)
            ));
        } else {
            assert_eq!(log.emit(event(i)), portcullis_audit::EmitOutcome::Queued);
        }
    }
    log.shutdown().await;
}

/// Opens the store a log just wrote. The log's writer thread lets go of the database a
/// moment after `shutdown` returns, so a `Locked` answer is retried for a while.
fn store(dir: &Path) -> SledStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match SledStore::open(&dir.join(STORE_DIR)) {
            Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
}

fn verify(dir: &Path, opts: &VerifyOptions) -> Vec<Problem> {
    let s = store(dir);
    verify_store(&s, opts).problems
}

fn cli(dir: &Path, cmd: AuditCommand) -> (ExitCodeLike, String) {
    let mut out = Vec::new();
    let code = run(dir, cmd, &mut out).unwrap();
    (code, String::from_utf8(out).unwrap())
}

fn verify_cmd() -> AuditCommand {
    AuditCommand::Verify {
        anchor_topic: None,
        shared_anchor: None,
        since_checkpoint: None,
        anchor: None,
        key: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_log_verifies_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 100).await;
    write(dir.path(), 20).await;
    let (code, out) = cli(dir.path(), verify_cmd());
    assert_eq!(code, ExitCodeLike::Success, "{out}");
    assert!(out.contains("OK: the log verifies"), "{out}");
    let s = store(dir.path());
    // 1 key-creation event + 120 events.
    assert_eq!(s.size().unwrap(), 121);
    assert_eq!(s.latest_checkpoint().unwrap().unwrap().0, 121);
    // Queries use the indexes.
    let hits = read::query(
        &s,
        &read::QueryFilter {
            principal: Some("user1".into()),
            outcome: Some(Outcome::Deny),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!hits.is_empty());
    assert!(hits
        .iter()
        .all(|e| e.principal.as_deref() == Some("user1") && e.outcome == Outcome::Deny));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 100).await;
    {
        let s = store(dir.path());
        let mut v = s.entry(37).unwrap().unwrap();
        let pos = v.windows(7).position(|w| w == b"Produce").unwrap();
        v[pos] ^= 0x20; // 'P' -> 'p': still valid JSON
        s.tamper_entry(37, Some(&v)).unwrap();
        s.flush().unwrap();
    }
    let problems = verify(dir.path(), &VerifyOptions::default());
    assert!(
        matches!(problems.as_slice(), [Problem::EntryAltered { seq: 37, .. }]),
        "{problems:?}"
    );
    let (code, out) = cli(dir.path(), verify_cmd());
    assert_eq!(code, ExitCodeLike::VerificationFailed);
    assert!(out.contains("ALTERED: entry 37"), "{out}");
    assert!(out.contains("first bad sequence number: 37"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 100).await;
    {
        let s = store(dir.path());
        s.tamper_entry(20, None).unwrap();
        s.flush().unwrap();
    }
    let problems = verify(dir.path(), &VerifyOptions::default());
    assert!(
        matches!(
            problems.as_slice(),
            [Problem::EntryMissing { seq: 20, count: 1 }]
        ),
        "{problems:?}"
    );
    let (_, out) = cli(dir.path(), verify_cmd());
    assert!(out.contains("DELETED: entry 20 is missing"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_tail_is_named_and_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 100).await;
    {
        let s = store(dir.path());
        for seq in 90u64..101 {
            s.tamper_entry(seq, None).unwrap();
        }
        s.flush().unwrap();
    }
    let problems = verify(dir.path(), &VerifyOptions::default());
    assert!(
        problems.contains(&Problem::Truncated {
            entries: 90,
            checkpoint_size: 101
        }),
        "{problems:?}"
    );
    let (_, out) = cli(dir.path(), verify_cmd());
    assert!(out.contains("TRUNCATED"), "{out}");
    // The proxy refuses to append to a truncated log.
    assert!(AuditLog::open(dir.path(), &config()).is_err());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_old_copy_is_a_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let old = dir.path().join("old");
    write(&data, 50).await;
    copy_dir(&data, &old);
    write(&data, 50).await;
    // The auditor saved the latest checkpoint.
    let saved = dir.path().join("saved.checkpoint");
    let (_, note) = cli(&data, AuditCommand::Checkpoint);
    std::fs::write(&saved, &note).unwrap();
    // The attacker restores the old copy.
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&old, &data);
    let (plain, _) = cli(&data, verify_cmd());
    assert_eq!(
        plain,
        ExitCodeLike::Success,
        "an old copy is self-consistent"
    );
    let (code, out) = cli(
        &data,
        AuditCommand::Verify {
            anchor_topic: None,
            shared_anchor: None,
            since_checkpoint: Some(saved.clone()),
            anchor: None,
            key: vec![],
        },
    );
    assert_eq!(code, ExitCodeLike::VerificationFailed);
    assert!(out.contains("ROLLBACK"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_check_and_anchor_file() {
    let dir = tempfile::tempdir().unwrap();
    let anchor = dir.path().join("anchor");
    let cfg = AuditLogConfig {
        anchor_file: Some(anchor.clone()),
        ..config()
    };
    let log = AuditLog::open(dir.path(), &cfg).unwrap();
    for i in 0..40 {
        log.emit(event(i));
    }
    let saved = log.checkpoint_now().await.unwrap();
    for i in 0..40 {
        log.emit(event(i));
    }
    log.shutdown().await;
    drop(log);
    let saved_path = dir.path().join("saved");
    std::fs::write(&saved_path, &saved).unwrap();
    let (code, out) = cli(
        dir.path(),
        AuditCommand::Verify {
            anchor_topic: None,
            shared_anchor: None,
            since_checkpoint: Some(saved_path),
            anchor: Some(anchor.clone()),
            key: vec![],
        },
    );
    assert_eq!(code, ExitCodeLike::Success, "{out}");
    // Incremental: only the entries after the saved checkpoint were recomputed.
    assert!(out.contains("recomputed 40)"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_checkpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 100).await;
    let genuine = {
        let s = store(dir.path());
        VerifierKey::parse(&s.verifier_keys().unwrap()[0]).unwrap()
    };
    {
        let s = store(dir.path());
        // Rewrite entry 5 and re-sign every checkpoint with the attacker's key, which is also
        // slipped into the store's key list.
        let forger = Signer::generate("test.example/audit").unwrap();
        s.add_verifier_key(&forger.verifier().to_string()).unwrap();
        let mut v = s.entry(5).unwrap().unwrap();
        let pos = v.windows(7).position(|w| w == b"Produce").unwrap();
        v[pos] = b'X';
        s.tamper_entry(5, Some(&v)).unwrap();
        let cps: Vec<(u64, String)> = s.checkpoints().map(Result::unwrap).collect();
        for (size, note) in cps {
            let cp = portcullis_audit::checkpoint::SignedCheckpoint::parse(&note).unwrap();
            let forged = portcullis_audit::checkpoint::Checkpoint {
                root: [9; 32],
                ..cp.checkpoint
            };
            s.put_checkpoint(size, &forged.sign(&forger)).unwrap();
        }
        s.flush().unwrap();
    }
    let problems = verify(dir.path(), &VerifyOptions::default());
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::BadSignature { .. })),
        "{problems:?}"
    );
    let (code, out) = cli(
        dir.path(),
        AuditCommand::Verify {
            anchor_topic: None,
            shared_anchor: None,
            since_checkpoint: None,
            anchor: None,
            key: vec![genuine.to_string()],
        },
    );
    assert_eq!(code, ExitCodeLike::VerificationFailed);
    assert!(out.contains("FORGED"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_and_exports_verify_offline_and_detect_tampering() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 100).await;
    let (_, key) = cli(dir.path(), AuditCommand::Pubkey { all: false });
    let key = key.trim().to_string();

    let proof = dir.path().join("proof.json");
    cli(
        dir.path(),
        AuditCommand::Prove {
            seq: 42,
            out: Some(proof.clone()),
        },
    );
    let (code, out) = cli(
        Path::new("/nonexistent"),
        AuditCommand::VerifyProof {
            file: proof.clone(),
            key: vec![key.clone()],
        },
    );
    assert_eq!(code, ExitCodeLike::Success, "{out}");
    let text = std::fs::read_to_string(&proof)
        .unwrap()
        .replace("Produce", "Pr0duce");
    std::fs::write(&proof, text).unwrap();
    let (code, out) = cli(
        Path::new("/nonexistent"),
        AuditCommand::VerifyProof {
            file: proof,
            key: vec![key.clone()],
        },
    );
    assert_eq!(code, ExitCodeLike::VerificationFailed);
    assert!(out.contains("ALTERED"), "{out}");

    let out_dir = dir.path().join("export");
    cli(
        dir.path(),
        AuditCommand::Export {
            format: ExportFormat::Ocsf,
            from: Some(10),
            to: Some(70),
            out: out_dir.clone(),
        },
    );
    let keys = vec![VerifierKey::parse(&key).unwrap()];
    let report = verify_export(&out_dir, &keys);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 60);
    assert!(out_dir.join("events.ocsf.jsonl").exists());

    // Alter an entry from entry 33 on in the export (durable authn events may be written
    // ahead of queued data-path ones, so which entry is a Produce event varies).
    let path = out_dir.join("entries.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let at = (23..lines.len())
        .find(|i| lines[*i].contains("Produce"))
        .unwrap();
    let altered_seq = 10 + at as u64;
    lines[at] = lines[at].replacen("Produce", "Pr0duce", 1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let report = verify_export(&out_dir, &keys);
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::EntryAltered { seq, .. } if *seq == altered_seq)),
        "{:?}",
        report.problems
    );
    // Delete a line.
    lines.remove(5);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let report = verify_export(&out_dir, &keys);
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::EntryMissing { seq: 15, .. })),
        "{:?}",
        report.problems
    );
    // Another key does not verify the export.
    let other = Signer::generate("test.example/audit").unwrap();
    let s = store(dir.path());
    let out2 = dir.path().join("export2");
    export(&s, &out2, ExportFormat::Jsonl, None, None).unwrap();
    let report = verify_export(&out2, &[other.verifier().clone()]);
    assert!(report
        .problems
        .iter()
        .any(|p| matches!(p, Problem::BadSignature { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_is_audited_and_old_checkpoints_still_verify() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), &config()).unwrap();
    for i in 0..30 {
        log.emit(event(i));
    }
    log.checkpoint_now().await.unwrap();
    let first = {
        let note = log.checkpoint_now().await.unwrap();
        let _ = note;
        read::verifier_keys(log.store()).unwrap()[0].clone()
    };
    let new_key = log.rotate_key().await.unwrap();
    for i in 0..30 {
        log.emit(event(i));
    }
    log.shutdown().await;
    drop(log);
    let (_, keys) = cli(dir.path(), AuditCommand::Pubkey { all: true });
    assert_eq!(keys.lines().count(), 2);
    assert_eq!(keys.lines().last().unwrap(), new_key.to_string());
    // Pinning only the first key is enough: the rotation entry carries trust to the new key.
    let (code, out) = cli(
        dir.path(),
        AuditCommand::Verify {
            anchor_topic: None,
            shared_anchor: None,
            since_checkpoint: None,
            anchor: None,
            key: vec![first],
        },
    );
    assert_eq!(code, ExitCodeLike::Success, "{out}");
    let s = store(dir.path());
    let rot = read::query(
        &s,
        &read::QueryFilter {
            category: Some(Category::Key),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(rot
        .iter()
        .any(|e| e.action == portcullis_audit::KEY_ROTATE_ACTION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_store_is_reported_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), &config()).unwrap();
    let mut out = Vec::new();
    let err = run(dir.path(), AuditCommand::Checkpoint, &mut out).unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
    log.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_never_panics_the_verifier() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 40).await;
    {
        let s = store(dir.path());
        s.raw_entries()
            .insert(3u64.to_be_bytes(), &[0xff, 0x00, b'{'][..])
            .unwrap();
        s.raw_entries()
            .insert(b"short".as_slice(), &b"x"[..])
            .unwrap();
        s.raw_checkpoints()
            .insert(16u64.to_be_bytes(), &b"\xff\xfe garbage"[..])
            .unwrap();
        s.raw_checkpoints()
            .insert(
                17u64.to_be_bytes(),
                &b"o\n17\nAAAA\n\n\xe2\x80\x94 o AAAA\n"[..],
            )
            .unwrap();
        s.flush().unwrap();
    }
    let s = store(dir.path());
    let report = verify_store(&s, &VerifyOptions::default());
    assert!(!report.ok());
    drop(s);
    let (code, _) = cli(dir.path(), verify_cmd());
    assert_eq!(code, ExitCodeLike::VerificationFailed);
    let bad = dir.path().join("bad.json");
    let key = Signer::generate("o").unwrap().verifier().to_string();
    for text in ["", "{}", "{\"format\":1}", "null", "[1,2]"] {
        std::fs::write(&bad, text).unwrap();
        let (code, _) = cli(
            Path::new("/nonexistent"),
            AuditCommand::VerifyProof {
                file: bad.clone(),
                key: vec![key.clone()],
            },
        );
        assert_eq!(code, ExitCodeLike::VerificationFailed);
    }
    let empty = dir.path().join("empty-export");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("manifest.json"), "{\"format\":\"portcullis-audit-export/v1\",\"origin\":\"o\",\"from\":5,\"to\":2,\"rendering\":\"jsonl\"}").unwrap();
    std::fs::write(empty.join("entries.jsonl"), "garbage\n{}\n").unwrap();
    std::fs::write(
        empty.join("proofs.jsonl"),
        "{\"checkpoint\":\"x\",\"from\":5,\"to\":1,\"proof\":[\"!!\"]}\n",
    )
    .unwrap();
    let report = verify_export(&empty, &[]);
    assert!(!report.ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_queries_and_repair_of_lost_hashes() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 60).await;
    {
        let s = store(dir.path());
        let all = |since: &str, until: &str, newest_first: bool| {
            read::query(
                &s,
                &read::QueryFilter {
                    since: Some(since.into()),
                    until: Some(until.into()),
                    newest_first,
                    limit: 1000,
                    ..Default::default()
                },
            )
            .unwrap()
        };
        let hits = all("2000", "2100", false);
        assert_eq!(hits.len(), 61);
        assert!(hits.windows(2).all(|w| w[0].seq < w[1].seq));
        let newest = all("2000", "2100", true);
        assert_eq!(newest.first().unwrap().seq, Some(60));
        let ts = hits[30].timestamp.clone();
        let from_30 = all(&ts, "2100", false);
        assert!(from_30.iter().all(|e| e.timestamp >= ts));
        assert!(from_30.len() >= 31);
        assert!(all("2100", "2200", false).is_empty());
    }
    // Lose the leaf hashes, as after a crash between the entry and the hash writes.
    {
        let db = sled::open(dir.path().join(STORE_DIR)).unwrap();
        db.open_tree("leaf_tiles").unwrap().clear().unwrap();
        db.flush().unwrap();
    }
    // Opening repairs them from the entries, and the log still verifies.
    let log = AuditLog::open(dir.path(), &config()).unwrap();
    log.shutdown().await;
    drop(log);
    let (code, out) = cli(dir.path(), verify_cmd());
    assert_eq!(code, ExitCodeLike::Success, "{out}");
}

/// Writes `n` events through the async path only (fast enough for logs of many batches).
async fn write_many(dir: &Path, n: u64) {
    let log = AuditLog::open(dir, &config()).unwrap();
    let base = log.stats().appended;
    for i in 0..n {
        let mut ev = event(i);
        loop {
            match log.try_emit(ev) {
                Ok(()) => break,
                Err(back) => {
                    ev = back;
                    tokio::time::sleep(std::time::Duration::from_micros(200)).await;
                }
            }
        }
    }
    while log.stats().appended - base < n {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    log.shutdown().await;
}

/// A log of several verifier batches (hashed on parallel threads and walked in order):
/// damage in early, middle and late batches is each named at its own sequence number, in
/// order, and a clean copy verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_across_many_batches_is_named_in_order() {
    let dir = tempfile::tempdir().unwrap();
    write_many(dir.path(), 12_000).await;
    let clean = verify_store(&store(dir.path()), &VerifyOptions::default());
    assert!(clean.ok(), "{:?}", clean.problems);
    assert_eq!(clean.entries_checked, 12_001);
    {
        let s = store(dir.path());
        for seq in [5u64, 4_100, 11_990] {
            let mut v = s.entry(seq).unwrap().unwrap();
            let pos = v.windows(7).position(|w| w == b"Produce").unwrap();
            v[pos] ^= 0x20;
            s.tamper_entry(seq, Some(&v)).unwrap();
        }
        s.tamper_entry(8_200, None).unwrap();
        s.flush().unwrap();
    }
    let report = verify_store(&store(dir.path()), &VerifyOptions::default());
    let mut altered: Vec<u64> = report
        .problems
        .iter()
        .filter_map(|p| match p {
            Problem::EntryAltered { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    altered.sort_unstable();
    assert_eq!(altered, [5, 4_100, 11_990], "{:?}", report.problems);
    assert!(
        report.problems.contains(&Problem::EntryMissing {
            seq: 8_200,
            count: 1
        }),
        "{:?}",
        report.problems
    );
    assert_eq!(report.problems.len(), 4, "{:?}", report.problems);
    assert_eq!(report.first_bad_seq(), Some(5));
    assert_eq!(report.entries_checked, 12_000);
}

/// Export directories are private and never written through a planted link (issue 13).
#[cfg(unix)]
#[tokio::test]
async fn exports_are_private_and_never_follow_planted_links() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 30).await;
    let s = store(dir.path());

    let fresh = dir.path().join("fresh");
    export(&s, &fresh, ExportFormat::Jsonl, None, None).unwrap();
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "export directory mode {mode:o}");
    let entries = std::fs::metadata(fresh.join("entries.jsonl")).unwrap();
    assert_eq!(
        entries.permissions().mode() & 0o077,
        0,
        "entries readable by others"
    );

    // Another local user planted a link where a file of the export will go.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let planted = dir.path().join("planted");
    std::fs::create_dir(&planted).unwrap();
    std::os::unix::fs::symlink(&victim, planted.join("entries.jsonl")).unwrap();
    assert!(export(&s, &planted, ExportFormat::Jsonl, None, None).is_err());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    // ... or made the export directory itself a link to a directory of theirs.
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let linked = dir.path().join("linked");
    std::os::unix::fs::symlink(&theirs, &linked).unwrap();
    assert!(export(&s, &linked, ExportFormat::Jsonl, None, None).is_err());
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0);
}
