//! A pod's sandbox process, as the kubelet's `pause` is: PID 1 of the pod, holding its
//! namespaces. It sleeps until SIGTERM or SIGINT (exit 0) and reaps any orphan that a process
//! sharing its PID namespace leaves behind, so zombies never pile up.
//!
//! No dependencies: the few C library calls it needs are declared here, so the static binary
//! stays small and builds with nothing but the standard library.

use std::ffi::c_int;

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;
const SIGCHLD: c_int = 17;
const WNOHANG: c_int = 1;

unsafe extern "C" {
    fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
    fn pause() -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn _exit(status: c_int) -> !;
}

extern "C" fn stop(_: c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { _exit(0) }
}

extern "C" fn reap(_: c_int) {
    let mut status = 0;
    // SAFETY: waitpid is async-signal-safe; the status pointer is valid for the call.
    while unsafe { waitpid(-1, &mut status, WNOHANG) } > 0 {}
}

fn main() {
    // SAFETY: the handlers only make async-signal-safe calls.
    unsafe {
        signal(SIGINT, stop);
        signal(SIGTERM, stop);
        signal(SIGCHLD, reap);
    }
    loop {
        // SAFETY: pause has no preconditions; it returns after each handled signal.
        unsafe { pause() };
    }
}
