// The Go subject of tests/tests/go_runtime.rs: grows the heap from two functions, each in a
// goroutine of its own, one after the other, so that what each grew can be read from the
// process's mappings between them. Go grows its heap on the thread's system stack
// (runtime.systemstack): a growth's stack reaches these functions only across that switch.
//
// Protocol (as pmap-workload's): waits for a line on stdin, then for each grower runs it,
// prints "checkpoint" and stops itself with SIGSTOP; exits when continued after the last.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"syscall"
)

// The growth is kept reachable, and the collector off, so that nothing grown is given back or
// used again by the other grower.
var slices [][]byte
var maps []map[int]int

//go:noinline
func growSlices() {
	for i := 0; i < 64; i++ {
		slices = append(slices, make([]byte, 1<<20))
	}
}

//go:noinline
func growMaps() {
	m := make(map[int]int)
	for i := 0; i < 1<<20; i++ {
		m[i] = i
	}
	maps = append(maps, m)
}

// checkpoint stops the process from the thread that runs it: a SIGSTOP sent to the process
// (kill) is handled by whichever thread the kernel picks (complete_signal()), often not this
// one, which meanwhile returns to Go, runs on and may even exit before the stop takes
// effect. Sent to this thread (tgkill), the stop begins as it returns from the call.
func checkpoint() {
	fmt.Println("checkpoint")
	runtime.LockOSThread()
	syscall.Tgkill(os.Getpid(), syscall.Gettid(), syscall.SIGSTOP)
	runtime.UnlockOSThread()
}

func inGoroutine(grow func()) {
	done := make(chan struct{})
	go func() {
		grow()
		close(done)
	}()
	<-done
}

func main() {
	debug.SetGCPercent(-1)
	bufio.NewReader(os.Stdin).ReadString('\n')
	inGoroutine(growSlices)
	checkpoint()
	inGoroutine(growMaps)
	checkpoint()
}
