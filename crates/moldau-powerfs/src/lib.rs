//! Test support for power-loss tests: [`PowerFs`] mounts a FUSE filesystem (the `fuser`
//! crate; needs `/dev/fuse` and root, or `fusermount3`) that holds everything in memory
//! and keeps each file's and directory's unsynced changes apart from what an fsync made
//! durable (see [`model`] for exactly what counts as durable). [`PowerFs::power_cut`]
//! unmounts it (the processes using it must be dead: kill them first, as power loss
//! would), lets only the durable state plus what the chosen [`Cut`] allows survive, and
//! mounts it again on the same path with nothing cached in the kernel.
//! [`PowerFs::inject`] makes writes or fsyncs of one directory's files fail with `EIO`,
//! or its reads slow.
//!
//! Every open file is served with `FOPEN_DIRECT_IO`, so each `write(2)` reaches the
//! model as one operation at its offset and nothing is held in the kernel's page cache
//! (memory mapping files is therefore not supported, and Moldau does not map any).

pub mod model;

pub use model::{Cut, CutReport, Fault, SplitMix};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};
use model::{Content, FsError, Tree};
use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Attributes and entries are not cached by the kernel: the model is the only truth.
const TTL: Duration = Duration::ZERO;

/// A mounted power-loss filesystem. Unmounted when dropped.
pub struct PowerFs {
    tree: Arc<Mutex<Tree>>,
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
    owner: (u32, u32),
}

impl PowerFs {
    /// Mounts an empty filesystem on `mountpoint` (an existing directory). Its files
    /// belong to the mountpoint's owner.
    ///
    /// Errors: the mount's (no `/dev/fuse`, no permission).
    pub fn mount(mountpoint: &Path) -> io::Result<PowerFs> {
        let meta = std::fs::metadata(mountpoint)?;
        let mut fs = PowerFs {
            tree: Arc::new(Mutex::new(Tree::default())),
            session: None,
            mountpoint: mountpoint.to_path_buf(),
            owner: (meta.uid(), meta.gid()),
        };
        fs.mount_again()?;
        Ok(fs)
    }

    fn mount_again(&mut self) -> io::Result<()> {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("moldau-powerfs".into()),
            MountOption::RW,
        ];
        // Several request loops, so that a read held by a slow-disk fault does not hold
        // up every other operation (the model is one mutex either way).
        config.n_threads = Some(8);
        let session = fuser::spawn_mount2(
            Adapter {
                tree: self.tree.clone(),
                owner: self.owner,
            },
            &self.mountpoint,
            &config,
        )?;
        self.session = Some(session);
        Ok(())
    }

    /// The mountpoint.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Simulates a power cut: unmounts (every process with a file open here must be
    /// gone), keeps the durable state plus what `cut` lets survive (random choices from
    /// `seed`, so a seed replays), and mounts again.
    ///
    /// Errors: the unmount's or the mount's.
    pub fn power_cut(&mut self, cut: Cut, seed: u64) -> io::Result<CutReport> {
        if let Some(session) = self.session.take() {
            match session.umount_and_join() {
                // A worker thread that was reading the device when the unmount tore the
                // connection down reports it as aborted (seen once in CI): the end we
                // asked for, not a failure.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                other => other?,
            }
        }
        let report = lock(&self.tree).power_cut(cut, &mut SplitMix::new(seed));
        self.mount_again()?;
        Ok(report)
    }

    /// Injects `fault` into the files directly in `dir` (a directory under the
    /// mountpoint, given by its full path); [`Fault::default()`] removes it. Files
    /// created there later are affected too.
    ///
    /// Errors: `NotFound` if `dir` is not a directory under the mountpoint.
    pub fn inject(&self, dir: &Path, fault: Fault) -> io::Result<()> {
        let not_found = || io::Error::new(io::ErrorKind::NotFound, dir.display().to_string());
        let relative = dir
            .strip_prefix(&self.mountpoint)
            .map_err(|_| not_found())?;
        let mut tree = lock(&self.tree);
        let mut ino = model::ROOT;
        for part in relative.components() {
            ino = tree
                .lookup(ino, part.as_os_str())
                .map_err(|_| not_found())?;
        }
        if fault == Fault::default() {
            tree.faults.remove(&ino);
        } else {
            tree.faults.insert(ino, fault);
        }
        Ok(())
    }

    /// File fsyncs and directory fsyncs served so far.
    pub fn fsyncs(&self) -> (u64, u64) {
        let tree = lock(&self.tree);
        (tree.fsyncs, tree.dir_fsyncs)
    }
}

impl Drop for PowerFs {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = session.umount_and_join();
        }
    }
}

fn lock(tree: &Mutex<Tree>) -> MutexGuard<'_, Tree> {
    // A panic inside a handler leaves the model as it was before that operation.
    tree.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The `fuser` filesystem over the shared model.
struct Adapter {
    tree: Arc<Mutex<Tree>>,
    owner: (u32, u32),
}

fn errno(e: FsError) -> Errno {
    match e {
        FsError::NotFound => Errno::ENOENT,
        FsError::Exists => Errno::EEXIST,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::IsDir => Errno::EISDIR,
        FsError::NotEmpty => Errno::ENOTEMPTY,
        FsError::Io => Errno::EIO,
    }
}

impl Adapter {
    fn attr(&self, tree: &Tree, ino: u64) -> Result<FileAttr, FsError> {
        let node = tree.nodes.get(&ino).ok_or(FsError::NotFound)?;
        let (kind, size, nlink) = match &node.live {
            Content::File(bytes) => (FileType::RegularFile, bytes.len() as u64, 1),
            Content::Dir(entries) => (FileType::Directory, 0, 2 + entries.len() as u32),
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind,
            perm: node.perm,
            nlink,
            uid: self.owner.0,
            gid: self.owner.1,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn entry(&self, reply: ReplyEntry, result: Result<u64, FsError>) {
        let tree = lock(&self.tree);
        match result.and_then(|ino| self.attr(&tree, ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn attr_reply(&self, tree: &Tree, result: Result<u64, FsError>, reply: ReplyAttr) {
        match result.and_then(|ino| self.attr(tree, ino)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn empty(reply: ReplyEmpty, result: Result<(), FsError>) {
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }
}

impl Filesystem for Adapter {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = lock(&self.tree).lookup(parent.0, name);
        self.entry(reply, found);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.attr_reply(&lock(&self.tree), Ok(ino.0), reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut tree = lock(&self.tree);
        let mut result = Ok(());
        if let Some(len) = size {
            result = tree.set_len(ino.0, len);
        }
        if let (Ok(()), Some(mode), Some(node)) = (&result, mode, tree.nodes.get_mut(&ino.0)) {
            node.perm = (mode & 0o7777) as u16;
        }
        self.attr_reply(&tree, result.map(|()| ino.0), reply);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let made = lock(&self.tree).create(parent.0, name, true, (mode & !umask & 0o7777) as u16);
        self.entry(reply, made);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut tree = lock(&self.tree);
        let made = tree.create(parent.0, name, false, (mode & !umask & 0o7777) as u16);
        match made.and_then(|ino| self.attr(&tree, ino)) {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut tree = lock(&self.tree);
        let result = if flags.0 & libc_o_trunc() != 0 {
            tree.set_len(ino.0, 0)
        } else {
            self.attr(&tree, ino.0).map(|_| ())
        };
        match result {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let delay = lock(&self.tree).fault(ino.0).read_delay_ms;
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let tree = lock(&self.tree);
        match tree.read(ino.0, offset, size as usize) {
            Ok(bytes) => reply.data(bytes),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        match lock(&self.tree).write(ino.0, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        Self::empty(reply, lock(&self.tree).sync(ino.0));
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        Self::empty(reply, lock(&self.tree).sync(ino.0));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(reply, lock(&self.tree).remove(parent.0, name, false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(reply, lock(&self.tree).remove(parent.0, name, true));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            // RENAME_NOREPLACE / RENAME_EXCHANGE are not modelled.
            reply.error(Errno::EINVAL);
            return;
        }
        Self::empty(
            reply,
            lock(&self.tree).rename(parent.0, name, new_parent.0, new_name),
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let tree = lock(&self.tree);
        let Some(Content::Dir(entries)) = tree.nodes.get(&ino.0).map(|n| &n.live) else {
            reply.error(Errno::ENOTDIR);
            return;
        };
        let dots = [
            (ino.0, FileType::Directory, OsStr::new(".")),
            (ino.0, FileType::Directory, OsStr::new("..")),
        ];
        let children = entries.iter().map(|(name, child)| {
            let kind = match tree.nodes.get(child).map(|n| &n.live) {
                Some(Content::Dir(_)) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            (*child, kind, name.as_os_str())
        });
        for (i, (child, kind, name)) in dots
            .into_iter()
            .chain(children)
            .enumerate()
            .skip(offset as usize)
        {
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Plenty of room: space is not what this filesystem tests.
        reply.statfs(1 << 24, 1 << 24, 1 << 24, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}

/// `O_TRUNC` on Linux.
const fn libc_o_trunc() -> i32 {
    0o1000
}
