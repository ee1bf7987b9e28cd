//! The filesystem as a power cut sees it: every inode's content twice, as the running
//! system sees it (`live`) and as the disk holds it (`durable`), and between them the
//! operations not yet made durable (`pending`), in order.
//!
//! The model is POSIX's promise and nothing more:
//! - a file's data and size are durable once the file is fsynced (`fsync` or
//!   `fdatasync`);
//! - a directory's entries (create, unlink, rename into or out of it) are durable once
//!   the directory itself is fsynced, so a new file whose directory was never fsynced
//!   is gone after a cut even if its data was synced;
//! - a rename within one directory is one operation (it survives whole or not at all);
//!   across directories it is an unlink in one and a link in the other, each made
//!   durable by its own directory's fsync.
//!
//! Real filesystems often keep more (ext4 commits a new file's entry with its fsync),
//! so software correct under this model is correct on them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};

/// The root directory's inode number (FUSE's `FUSE_ROOT_ID`).
pub const ROOT: u64 = 1;

/// An inode's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A regular file's bytes.
    File(Vec<u8>),
    /// A directory's entries: name → inode number.
    Dir(BTreeMap<OsString, u64>),
}

/// One change not yet durable.
#[derive(Debug, Clone)]
pub enum Op {
    /// `data` written at byte `offset` (a file grows with zeros up to it).
    Write { offset: u64, data: Vec<u8> },
    /// The file's size set to this many bytes (truncate or extend with zeros).
    SetLen(u64),
    /// A directory entry added (or replaced): name → inode.
    Link(OsString, u64),
    /// A directory entry removed.
    Unlink(OsString),
    /// A rename within the directory (replacing `to` if it exists).
    Rename { from: OsString, to: OsString },
}

/// How a power cut treats each inode's pending operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Every unsynced operation is lost.
    DropUnsynced,
    /// A random prefix of each inode's unsynced operations survives (the disk wrote
    /// some of the dirty data back before the cut, in order).
    KeepPrefix,
    /// As `KeepPrefix`, and the first write that did not survive survives in part: a
    /// random number of its leading bytes (a torn write).
    TearLast,
}

/// What a cut did, for tests to show that it lost something.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CutReport {
    /// Unsynced operations lost (wholly or torn).
    pub ops_lost: usize,
    /// Unsynced operations kept.
    pub ops_kept: usize,
    /// Inodes no longer reachable from the root afterwards.
    pub inodes_dropped: usize,
}

/// One inode.
#[derive(Debug, Clone)]
pub struct Inode {
    pub live: Content,
    pub durable: Content,
    pub pending: Vec<Op>,
    /// Permission bits.
    pub perm: u16,
    /// The directory it was created in (for [`Fault`]s set on a directory).
    pub parent: u64,
}

/// Faults injected into the files of one directory: a failing call returns `EIO` and
/// changes nothing (a failed fsync leaves the writes unsynced); a slow disk makes each
/// read wait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fault {
    /// `write(2)` fails.
    pub write: bool,
    /// `fsync(2)` / `fdatasync(2)` fails.
    pub fsync: bool,
    /// Each `read(2)` takes this long (ms) before it is served.
    pub read_delay_ms: u64,
}

impl Inode {
    fn new(content: Content, perm: u16, parent: u64) -> Inode {
        Inode {
            durable: content.clone(),
            live: content,
            pending: Vec::new(),
            perm,
            parent,
        }
    }

    fn apply(&mut self, op: Op) {
        apply(&mut self.live, &op);
        self.pending.push(op);
    }
}

/// Applies `op` to `content`; operations of the other kind are ignored (they are never
/// recorded on it).
fn apply(content: &mut Content, op: &Op) {
    match (content, op) {
        (Content::File(bytes), Op::Write { offset, data }) => {
            let start = *offset as usize;
            let end = start + data.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[start..end].copy_from_slice(data);
        }
        (Content::File(bytes), Op::SetLen(len)) => bytes.resize(*len as usize, 0),
        (Content::Dir(entries), Op::Link(name, ino)) => {
            entries.insert(name.clone(), *ino);
        }
        (Content::Dir(entries), Op::Unlink(name)) => {
            entries.remove(name);
        }
        (Content::Dir(entries), Op::Rename { from, to }) => {
            if let Some(ino) = entries.remove(from) {
                entries.insert(to.clone(), ino);
            }
        }
        _ => {}
    }
}

/// Errors of the model's operations, as errno values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsError {
    NotFound,
    Exists,
    NotDir,
    IsDir,
    NotEmpty,
    /// An injected I/O error.
    Io,
}

/// The whole filesystem.
#[derive(Debug)]
pub struct Tree {
    pub nodes: HashMap<u64, Inode>,
    next_ino: u64,
    /// Counters: fsyncs of files and of directories.
    pub fsyncs: u64,
    pub dir_fsyncs: u64,
    /// Injected faults by directory inode.
    pub faults: HashMap<u64, Fault>,
}

impl Default for Tree {
    fn default() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Inode::new(Content::Dir(BTreeMap::new()), 0o755, ROOT));
        Tree {
            nodes,
            next_ino: ROOT + 1,
            fsyncs: 0,
            dir_fsyncs: 0,
            faults: HashMap::new(),
        }
    }
}

impl Tree {
    /// The directory `parent`'s live entries.
    fn entries(&self, parent: u64) -> Result<&BTreeMap<OsString, u64>, FsError> {
        match self.nodes.get(&parent).map(|n| &n.live) {
            Some(Content::Dir(entries)) => Ok(entries),
            Some(Content::File(_)) => Err(FsError::NotDir),
            None => Err(FsError::NotFound),
        }
    }

    /// The inode `name` in `parent`.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64, FsError> {
        self.entries(parent)?
            .get(name)
            .copied()
            .ok_or(FsError::NotFound)
    }

    /// Creates `name` in `parent` (a file, or a directory with `dir`); returns its inode.
    pub fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        dir: bool,
        perm: u16,
    ) -> Result<u64, FsError> {
        if self.entries(parent)?.contains_key(name) {
            return Err(FsError::Exists);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let content = if dir {
            Content::Dir(BTreeMap::new())
        } else {
            Content::File(Vec::new())
        };
        self.nodes.insert(ino, Inode::new(content, perm, parent));
        self.node(parent)?.apply(Op::Link(name.to_owned(), ino));
        Ok(ino)
    }

    fn node(&mut self, ino: u64) -> Result<&mut Inode, FsError> {
        self.nodes.get_mut(&ino).ok_or(FsError::NotFound)
    }

    fn file(&mut self, ino: u64) -> Result<&mut Inode, FsError> {
        let node = self.node(ino)?;
        match node.live {
            Content::File(_) => Ok(node),
            Content::Dir(_) => Err(FsError::IsDir),
        }
    }

    /// The fault injected into the directory holding `ino`.
    pub fn fault(&self, ino: u64) -> Fault {
        self.nodes
            .get(&ino)
            .and_then(|n| self.faults.get(&n.parent))
            .copied()
            .unwrap_or_default()
    }

    /// Writes `data` at `offset` of file `ino`.
    pub fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<(), FsError> {
        if self.fault(ino).write {
            return Err(FsError::Io);
        }
        self.file(ino)?.apply(Op::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }

    /// Sets file `ino`'s size, bytes.
    pub fn set_len(&mut self, ino: u64, len: u64) -> Result<(), FsError> {
        self.file(ino)?.apply(Op::SetLen(len));
        Ok(())
    }

    /// Up to `size` bytes of file `ino` from `offset`.
    pub fn read(&self, ino: u64, offset: u64, size: usize) -> Result<&[u8], FsError> {
        match self.nodes.get(&ino).map(|n| &n.live) {
            Some(Content::File(bytes)) => {
                let start = (offset as usize).min(bytes.len());
                let end = start.saturating_add(size).min(bytes.len());
                Ok(&bytes[start..end])
            }
            Some(Content::Dir(_)) => Err(FsError::IsDir),
            None => Err(FsError::NotFound),
        }
    }

    /// Removes `name` from `parent`; with `dir`, only an empty directory.
    pub fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), FsError> {
        let ino = self.lookup(parent, name)?;
        match (&self.node(ino)?.live, dir) {
            (Content::Dir(e), true) if !e.is_empty() => return Err(FsError::NotEmpty),
            (Content::Dir(_), false) => return Err(FsError::IsDir),
            (Content::File(_), true) => return Err(FsError::NotDir),
            _ => {}
        }
        self.node(parent)?.apply(Op::Unlink(name.to_owned()));
        Ok(())
    }

    /// Renames `parent/name` to `new_parent/new_name`, replacing a file or an empty
    /// directory there.
    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
    ) -> Result<(), FsError> {
        let ino = self.lookup(parent, name)?;
        if let Ok(old) = self.lookup(new_parent, new_name) {
            if old == ino {
                return Ok(());
            }
            if let Content::Dir(e) = &self.node(old)?.live {
                if !e.is_empty() {
                    return Err(FsError::NotEmpty);
                }
            }
        }
        self.entries(new_parent)?;
        if parent == new_parent {
            self.node(parent)?.apply(Op::Rename {
                from: name.to_owned(),
                to: new_name.to_owned(),
            });
        } else {
            self.node(parent)?.apply(Op::Unlink(name.to_owned()));
            self.node(new_parent)?
                .apply(Op::Link(new_name.to_owned(), ino));
        }
        Ok(())
    }

    /// Makes inode `ino`'s content durable (fsync of a file or of a directory).
    pub fn sync(&mut self, ino: u64) -> Result<(), FsError> {
        if self.fault(ino).fsync {
            return Err(FsError::Io);
        }
        let node = self.node(ino)?;
        let dir = matches!(node.live, Content::Dir(_));
        for op in std::mem::take(&mut node.pending) {
            apply(&mut node.durable, &op);
        }
        if dir {
            self.dir_fsyncs += 1;
        } else {
            self.fsyncs += 1;
        }
        Ok(())
    }

    /// The power cut: every inode's content becomes its durable content plus the part of
    /// its pending operations that `cut` lets survive (choices drawn from `rng`); then
    /// only what the root still reaches remains, all of it durable.
    pub fn power_cut(&mut self, cut: Cut, rng: &mut SplitMix) -> CutReport {
        let mut report = CutReport::default();
        let mut inos: Vec<u64> = self.nodes.keys().copied().collect();
        inos.sort_unstable(); // the same seed makes the same choices
        for ino in inos {
            let Some(node) = self.nodes.get_mut(&ino) else {
                continue;
            };
            let pending = std::mem::take(&mut node.pending);
            let keep = match cut {
                Cut::DropUnsynced => 0,
                Cut::KeepPrefix | Cut::TearLast => rng.below(pending.len() as u64 + 1) as usize,
            };
            let mut content = node.durable.clone();
            for op in &pending[..keep] {
                apply(&mut content, op);
            }
            if cut == Cut::TearLast {
                if let Some(Op::Write { offset, data }) = pending.get(keep) {
                    let torn = rng.below(data.len() as u64) as usize;
                    apply(
                        &mut content,
                        &Op::Write {
                            offset: *offset,
                            data: data[..torn].to_vec(),
                        },
                    );
                }
            }
            report.ops_kept += keep;
            report.ops_lost += pending.len() - keep;
            node.durable = content.clone();
            node.live = content;
        }
        let mut reachable = HashSet::from([ROOT]);
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            if let Some(Content::Dir(entries)) = self.nodes.get(&ino).map(|n| &n.live) {
                for child in entries.values() {
                    if reachable.insert(*child) {
                        stack.push(*child);
                    }
                }
            }
        }
        let before = self.nodes.len();
        self.nodes.retain(|ino, _| reachable.contains(ino));
        report.inodes_dropped = before - self.nodes.len();
        for node in self.nodes.values_mut() {
            if let (Content::Dir(live), Content::Dir(durable)) = (&mut node.live, &mut node.durable)
            {
                live.retain(|_, ino| reachable.contains(ino));
                durable.clone_from(live);
            }
        }
        report
    }
}

/// A small seeded generator (SplitMix64), so a failing seed replays exactly.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    fn file(tree: &Tree, ino: u64) -> Vec<u8> {
        tree.read(ino, 0, usize::MAX).expect("file").to_vec()
    }

    #[test]
    fn a_cut_keeps_only_what_was_synced() {
        let mut t = Tree::default();
        let dir = t.create(ROOT, name("d"), true, 0o755).expect("mkdir");
        t.sync(ROOT).expect("sync root");
        let f = t.create(dir, name("f"), false, 0o644).expect("create");
        t.write(f, 0, b"synced").expect("write");
        t.sync(f).expect("fsync");
        t.sync(dir).expect("fsync dir");
        t.write(f, 6, b" lost").expect("write");
        let g = t.create(dir, name("g"), false, 0o644).expect("create");
        t.write(g, 0, b"data synced, entry not").expect("write");
        t.sync(g).expect("fsync");
        let report = t.power_cut(Cut::DropUnsynced, &mut SplitMix::new(1));
        assert_eq!(file(&t, f), b"synced");
        assert_eq!(t.lookup(dir, name("g")), Err(FsError::NotFound));
        assert_eq!(report.inodes_dropped, 1);
        assert_eq!(report.ops_lost, 2);
    }

    #[test]
    fn a_rename_in_one_directory_survives_whole_or_not_at_all() {
        for seed in 0..64 {
            let mut t = Tree::default();
            let f = t.create(ROOT, name("a.tmp"), false, 0o644).expect("create");
            t.write(f, 0, b"x").expect("write");
            t.sync(f).expect("fsync");
            t.sync(ROOT).expect("fsync dir");
            t.rename(ROOT, name("a.tmp"), ROOT, name("a"))
                .expect("rename");
            t.power_cut(Cut::KeepPrefix, &mut SplitMix::new(seed));
            let old = t.lookup(ROOT, name("a.tmp")).is_ok();
            let new = t.lookup(ROOT, name("a")).is_ok();
            assert!(old != new, "seed {seed}: old {old}, new {new}");
        }
    }

    #[test]
    fn torn_and_prefix_cuts_keep_ordered_prefixes() {
        let mut seen_torn = false;
        for seed in 0..200 {
            let mut t = Tree::default();
            let f = t.create(ROOT, name("log"), false, 0o644).expect("create");
            t.sync(ROOT).expect("fsync dir");
            t.write(f, 0, b"aaaa").expect("write");
            t.write(f, 4, b"bbbb").expect("write");
            t.power_cut(Cut::TearLast, &mut SplitMix::new(seed));
            let got = file(&t, f);
            assert!(b"aaaabbbb".starts_with(&got), "seed {seed}: {got:?}");
            seen_torn |= !got.len().is_multiple_of(4);
        }
        assert!(seen_torn, "no seed tore a write");
    }
}
