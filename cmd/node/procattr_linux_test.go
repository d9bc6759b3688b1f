package main

import "syscall"

// childAttr makes the kernel kill a node process if the test process dies
// first (a panic, a -timeout), so no node outlives its test holding a port.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
