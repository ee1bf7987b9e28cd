//! The filesystem mounted for real (needs `/dev/fuse` and root, as CI has): files
//! written through the kernel keep what was fsynced across a power cut and lose the
//! rest, and a new file survives only once its directory was fsynced.

use moldau_powerfs::{Cut, PowerFs};
use std::fs::{self, File, OpenOptions};
use std::io::Write;

#[test]
fn writes_through_the_kernel_survive_a_cut_only_once_synced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fs = PowerFs::mount(dir.path())
        .expect("mounting the FUSE filesystem failed: this test needs /dev/fuse and root");
    let root = fs.path().to_path_buf();
    fs::create_dir(root.join("p")).expect("mkdir");
    File::open(&root)
        .and_then(|d| d.sync_all())
        .expect("fsync root");
    let path = root.join("p/00.log");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("create");
    f.write_all(b"durable;").expect("write");
    f.sync_data().expect("fdatasync");
    File::open(root.join("p"))
        .and_then(|d| d.sync_all())
        .expect("fsync dir");
    f.write_all(b"volatile").expect("write");
    assert_eq!(fs::read(&path).expect("read"), b"durable;volatile");
    fs::write(root.join("p/unsynced"), b"x").expect("write");
    drop(f);

    let report = fs.power_cut(Cut::DropUnsynced, 7).expect("power cut");
    assert_eq!(fs::read(&path).expect("read after the cut"), b"durable;");
    assert!(!root.join("p/unsynced").exists());
    assert!(report.ops_lost >= 2, "{report:?}");
    let (fsyncs, dir_fsyncs) = fs.fsyncs();
    assert!(fsyncs >= 1 && dir_fsyncs >= 2, "{fsyncs} {dir_fsyncs}");

    // Renames and truncation go through too.
    fs::rename(&path, root.join("p/00.log.deleted")).expect("rename");
    let f = OpenOptions::new()
        .write(true)
        .open(root.join("p/00.log.deleted"))
        .expect("open");
    f.set_len(3).expect("truncate");
    assert_eq!(
        fs::read(root.join("p/00.log.deleted")).expect("read"),
        b"dur"
    );
    let names: Vec<_> = fs::read_dir(root.join("p"))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["00.log.deleted"]);
}
