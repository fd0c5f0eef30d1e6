// A quiet program with many distinct groups of parked goroutines, each
// blocked a different way, that serves its own goroutine profile on
// 127.0.0.1 (the port is printed as "listening on ADDR"): ground truth for
// reading goroutines from outside.
package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"sync"
	"time"
)

var (
	never     = make(chan int)
	nothing   = make(chan int)
	other     = make(chan string)
	held      sync.Mutex
	rw        sync.RWMutex
	cond      = sync.NewCond(&sync.Mutex{})
	pending   sync.WaitGroup
	started   sync.WaitGroup
	nilChan   chan int
	listeners []net.Listener
)

//go:noinline
func sendForever(v int) { never <- v }

//go:noinline
func receiveForever() int { return <-nothing }

//go:noinline
func selectForever() {
	select {
	case v := <-nothing:
		_ = v
	case s := <-other:
		_ = s
	}
}

//go:noinline
func lockForever() { held.Lock() }

//go:noinline
func readLockForever() { rw.RLock() }

//go:noinline
func waitGroupForever() { pending.Wait() }

//go:noinline
func condForever() {
	cond.L.Lock()
	for {
		cond.Wait()
	}
}

//go:noinline
func sleepForever() { time.Sleep(time.Hour) }

//go:noinline
func acceptForever(l net.Listener) { _, _ = l.Accept() }

//go:noinline
func selectNoCases() { select {} }

//go:noinline
func receiveNil() { <-nilChan }

// Inlined helpers: the stack has frames that exist only in the inline tree.
func inner(v int)  { sendForever(v) }
func middle(v int) { inner(v) }

//go:noinline
func outer(v int) { middle(v) }

// spawn starts n goroutines running f and waits until each has started.
func spawn(n int, f func()) {
	for i := 0; i < n; i++ {
		started.Add(1)
		go func() {
			started.Done()
			f()
		}()
	}
}

func main() {
	held.Lock()
	rw.Lock()
	pending.Add(1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	listeners = append(listeners, l)

	for i := 0; i < 5; i++ {
		go sendForever(i)
	}
	spawn(4, func() { receiveForever() })
	spawn(3, selectForever)
	spawn(3, lockForever)
	spawn(2, readLockForever)
	spawn(2, waitGroupForever)
	spawn(2, condForever)
	spawn(4, sleepForever)
	spawn(1, func() { acceptForever(l) })
	spawn(2, selectNoCases)
	spawn(2, receiveNil)
	for i := 0; i < 3; i++ {
		go outer(i)
	}
	started.Wait()

	server, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go http.Serve(server, nil)
	// Let every goroutine park before saying so.
	time.Sleep(200 * time.Millisecond)
	fmt.Printf("listening on %s\n", server.Addr())
	os.Stdout.Sync()
	select {}
}
