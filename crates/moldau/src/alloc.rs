//! The process allocator: the system allocator, except that very large requests
//! (>= 1 GiB) are served by `mmap(MAP_NORESERVE)`.
//!
//! Why: the `kafka-protocol` decoders size `Vec::with_capacity` from the array count a
//! peer sends. A frame of a few bytes claiming 2^31 elements asks for hundreds of GiB;
//! glibc refuses that under Linux's overcommit heuristic, and Rust then aborts the whole
//! process. With `MAP_NORESERVE` such a reservation is address space only: no page is
//! touched before the decoder runs out of bytes (a frame is at most
//! `socket.request.max.bytes`), fails, and the reservation is unmapped. So a hostile
//! count costs nothing and the connection is closed, as STYLE.md asks. No legitimate
//! allocation in the broker comes near 1 GiB, so the normal path is untouched.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Requests of at least this many bytes are reserved with `MAP_NORESERVE`.
const HUGE: usize = 1 << 30;
/// mmap returns page-aligned memory; larger alignments go to the system allocator.
const PAGE: usize = 4096;

/// See the module docs.
pub struct ReservingAllocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

// SAFETY: every path either forwards to `System` with the caller's guarantees, or maps
// and unmaps whole anonymous regions whose size is the layout's size, which the caller
// passes back unchanged to `dealloc`/`realloc` (the GlobalAlloc contract).
unsafe impl GlobalAlloc for ReservingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: anonymous private mapping, no file descriptor, checked result.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    layout.size(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return std::ptr::null_mut();
            }
            return p.cast();
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: anonymous mappings are zero-filled.
            return unsafe { self.alloc(layout) };
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from our mmap of exactly `layout.size()` bytes.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
            return;
        }
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: forwarded with the caller's arguments.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: allocate, copy the common prefix, free the old block.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_reservation_costs_nothing_and_is_returned() {
        let layout = Layout::from_size_align(200 << 30, 8).expect("layout");
        // SAFETY: paired alloc/dealloc with the same layout; one page touched.
        unsafe {
            let p = ReservingAllocator.alloc(layout);
            assert!(!p.is_null(), "200 GiB reservation granted as address space");
            p.write(1);
            assert_eq!(p.read(), 1);
            ReservingAllocator.dealloc(p, layout);
        }
        let small = Layout::from_size_align(64, 8).expect("layout");
        // SAFETY: paired alloc/dealloc with the same layout.
        unsafe {
            let p = ReservingAllocator.alloc(small);
            assert!(!p.is_null());
            ReservingAllocator.dealloc(p, small);
        }
    }
}
