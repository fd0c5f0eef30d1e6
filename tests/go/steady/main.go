// steady allocates heavily but keeps a constant live set: a ring of
// -live bytes (default 32 MiB) in 64 KiB buffers, overwritten round and round
// at -rate buffers per millisecond tick. Nothing leaks; memory is a sawtooth.
package main

import (
	"flag"
	"fmt"
	"time"
)

func fill(n int, b byte) []byte {
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = b
	}
	return buf
}

func main() {
	live := flag.Int("live", 32<<20, "bytes kept live")
	chunk := flag.Int("chunk", 64<<10, "bytes per buffer")
	perTick := flag.Int("rate", 4, "buffers replaced per millisecond")
	flag.Parse()
	ring := make([][]byte, *live / *chunk)
	fmt.Printf("live set %d bytes in %d buffers\n", len(ring)**chunk, len(ring))
	i := 0
	for range time.Tick(time.Millisecond) {
		for k := 0; k < *perTick; k++ {
			ring[i%len(ring)] = fill(*chunk, byte(i))
			i++
		}
	}
}
