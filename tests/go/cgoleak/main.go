// cgoleak: a Go service that leaks on both heaps: each request keeps 1,000
// bytes from malloc in c_remember, called through cgo (Go's heap profile
// never sees them; `leak trace --pid --native` does), and 512 bytes of Go
// heap in rememberGo. It samples its Go heap every 4 KiB (MemProfileRate),
// prints "ready pid N", waits for SIGUSR1, serves 20000 requests, runs a GC,
// prints "go kept BYTES bytes" and "done kept BYTES bytes in N blocks" (the
// C heap), and waits to be killed. Needs cgo (CGO_ENABLED=1).
package main

/*
#include <stdlib.h>
#include <string.h>
void *kept[100000];
int nkept;
__attribute__((noinline)) static void c_remember(int n) {
	char *p = malloc(n);
	memset(p, 1, n);
	kept[nkept++] = p;
}
*/
import "C"

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

var goKept [][]byte

//go:noinline
func remember(n int) { C.c_remember(C.int(n)) }

//go:noinline
func rememberGo(n int) { goKept = append(goKept, make([]byte, n)) }

//go:noinline
func handle(i int) {
	remember(1000)
	rememberGo(512)
}

func main() {
	runtime.MemProfileRate = 4096
	fmt.Printf("ready pid %d\n", os.Getpid())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	<-ch
	for i := 0; i < 20000; i++ {
		handle(i)
	}
	runtime.GC()
	fmt.Printf("go kept %d bytes\n", 20000*512)
	fmt.Printf("done kept %d bytes in %d blocks\n", 20000*1000, 20000)
	select {}
}
