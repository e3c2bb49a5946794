// Command gennotify writes the pay notifications the load test posts to
// the gateway: n successful JSAPI payments of the test merchant, each with
// its own transaction_id and out_trade_no, signed (MD5) with the test key,
// one XML document per line, split round-robin over parts files
// <out>-0.xml … <out>-<parts-1>.xml (one per wrk thread, so that no two
// threads send the same notification).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/caddy-wxpay/caddy-wxpay/bench"
)

func main() {
	n := flag.Int("n", 100000, "number of notifications")
	parts := flag.Int("parts", 2, "number of files (wrk threads)")
	prefix := flag.String("prefix", "L", "id prefix that keeps this series apart from others (1 to 12 letters and digits)")
	out := flag.String("out", "bench/out/notify", "file name prefix")
	flag.Parse()
	if *n < 1 || *parts < 1 || *parts > 64 || *n < *parts {
		log.Fatalf("gennotify: need 1 ≤ parts ≤ 64 and n ≥ parts")
	}
	if *prefix == "" {
		log.Fatalf("gennotify: -prefix is empty")
	}
	files := make([]*os.File, *parts)
	writers := make([]*bufio.Writer, *parts)
	for p := range files {
		f, err := os.Create(fmt.Sprintf("%s-%d.xml", *out, p))
		if err != nil {
			log.Fatalf("gennotify: %v", err)
		}
		files[p], writers[p] = f, bufio.NewWriterSize(f, 1<<20)
	}
	for i := 0; i < *n; i++ {
		doc, err := bench.Notification(*prefix, i)
		if err != nil {
			log.Fatalf("gennotify: %v", err)
		}
		w := writers[i%*parts]
		_, _ = w.Write(doc)
		if err := w.WriteByte('\n'); err != nil {
			log.Fatalf("gennotify: %v", err)
		}
	}
	for p, f := range files {
		if err := writers[p].Flush(); err != nil {
			log.Fatalf("gennotify: %v", err)
		}
		if err := f.Close(); err != nil {
			log.Fatalf("gennotify: %v", err)
		}
	}
	fmt.Printf("gennotify: %d notifications (prefix %s) in %d files %s-*.xml\n", *n, *prefix, *parts, *out)
}
