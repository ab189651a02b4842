//go:build linux && (amd64 || arm64)

package chdb

import (
	"syscall"
	"unsafe"
)

// kSigaction is the kernel's struct sigaction on linux/amd64 and arm64.
type kSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

const maxSig = 64

// sigState is a snapshot of every signal disposition.
type sigState [maxSig + 1]kSigaction

func saveSignals(s *sigState) {
	for sig := 1; sig <= maxSig; sig++ {
		syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), 0, uintptr(unsafe.Pointer(&s[sig])), 8, 0, 0)
	}
}

// restoreSignals puts back every handler the host had installed (not
// SIG_DFL/SIG_IGN) that changed since s was taken. chdb_connect resets
// SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT and SIGSYS to SIG_DFL on
// every call, even with chdb_set_signal_handlers_enabled(0), which turns a Go
// nil dereference into a process kill instead of a panic. Handlers chDB adds
// where the host had none (it takes SIGRTMIN) are left to chDB.
func restoreSignals(s *sigState) {
	var cur kSigaction
	for sig := 1; sig <= maxSig; sig++ {
		if s[sig].handler <= 1 { // SIG_DFL, SIG_IGN
			continue
		}
		syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), 0, uintptr(unsafe.Pointer(&cur)), 8, 0, 0)
		if cur != s[sig] {
			syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&s[sig])), 0, 8, 0, 0)
		}
	}
}
