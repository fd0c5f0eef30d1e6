// benchservice is the Service workload of `cargo xtask bench`: an HTTP
// service whose /work handler does typical per-request allocation (decode a
// small JSON order, build a response of a few dozen records, encode it). It
// leaks nothing; it exists to be loaded by benchload, traced and untraced.
// It does not import net/http/pprof, so Go's heap sampling starts off and
// `leak trace` turns it on: the benchmark includes that cost. -memprofilerate
// turns it on without a tracer, to tell Go's own sampling cost from leak's.
package main

import (
	"encoding/json"
	"flag"
	"net/http"
	"strconv"
	"strings"

	"leaktests/internal/bench"
	"leaktests/internal/svc"
)

// Item is one line of a response.
type Item struct {
	ID    int      `json:"id"`
	Name  string   `json:"name"`
	Price float64  `json:"price"`
	Tags  []string `json:"tags"`
}

// Order is what a client asks for.
type Order struct {
	Customer string `json:"customer"`
	Items    int    `json:"items"`
}

var orderJSON = []byte(`{"customer":"acme-42","items":40}`)

func work(w http.ResponseWriter, r *http.Request) {
	var o Order
	if err := json.Unmarshal(orderJSON, &o); err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	items := make([]Item, 0, o.Items)
	for i := 0; i < o.Items; i++ {
		items = append(items, Item{
			ID:    i,
			Name:  o.Customer + "-item-" + strconv.Itoa(i),
			Price: float64(i) * 1.25,
			Tags:  strings.Split("a,b,c,"+strconv.Itoa(i%7), ","),
		})
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(items); err != nil {
		http.Error(w, err.Error(), 500)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	sampling := bench.SamplingFlag()
	flag.Parse()
	sampling()
	http.HandleFunc("/work", work)
	svc.Serve(*addr)
}
