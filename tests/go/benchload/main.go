// benchload is the closed-loop load generator of `cargo xtask bench`: it
// sends a fixed number of GET requests with a fixed number of workers, each
// sending its next request as soon as the previous answer is read, and
// prints one JSON line: requests, seconds, throughput and latency quantiles.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "", "URL to GET")
	requests := flag.Int("n", 20000, "requests in all")
	concurrency := flag.Int("c", 8, "requests in flight")
	warmup := flag.Int("warmup", 200, "requests sent (and not counted) before the measurement")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "benchload: -url is required")
		os.Exit(2)
	}
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns:        *concurrency,
		MaxIdleConnsPerHost: *concurrency,
	}}
	get := func() error {
		resp, err := client.Get(*url)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %s", resp.Status)
		}
		return err
	}
	run := func(n int, record []time.Duration) error {
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, *concurrency)
		for w := 0; w < *concurrency; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					t := time.Now()
					if err := get(); err != nil {
						errs <- err
						return
					}
					if record != nil {
						record[i] = time.Since(t)
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
	if err := run(*warmup, nil); err != nil {
		fmt.Fprintln(os.Stderr, "benchload: warm-up:", err)
		os.Exit(1)
	}
	lat := make([]time.Duration, *requests)
	start := time.Now()
	if err := run(*requests, lat); err != nil {
		fmt.Fprintln(os.Stderr, "benchload:", err)
		os.Exit(1)
	}
	secs := time.Since(start).Seconds()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	out, _ := json.Marshal(map[string]any{
		"requests":    *requests,
		"concurrency": *concurrency,
		"seconds":     secs,
		"rps":         float64(*requests) / secs,
		"p50_ms":      q(0.50),
		"p99_ms":      q(0.99),
	})
	fmt.Println(string(out))
}
