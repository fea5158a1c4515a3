// Command httpload measures GraphQL-over-HTTP throughput and latency.
//
// -c clients (goroutines) share one http.Client whose Transport keeps
// connections alive (MaxIdleConnsPerHost = -c), and each POSTs a GraphQL
// document to -url in a closed loop for -warmup plus -d. Only requests that
// complete after the warm-up are counted. -query typename sends
// `{ __typename }` (the cost of the HTTP + GraphQL stack alone), -query
// createjob sends a createJob mutation (the cost of storing a job too).
// A response that is not HTTP 200, cannot be read or decoded, or carries a
// GraphQL "errors" field counts as an error. Reports requests/s, the error
// count and p50/p99 latency of all counted requests.
//
// Output: one JSON line on stdout and one human line on stderr; the exit
// status is 1 when not a single counted request succeeded.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

var documents = map[string]string{
	"typename":  `{ __typename }`,
	"createjob": `mutation { createJob(input:{type:"bench", payload:{n:1}}) { id status } }`,
}

type worker struct {
	latencies []int64 // ns, counted requests only
	requests  int64
	errors    int64
	firstErr  string
}

func main() {
	target := flag.String("url", "http://127.0.0.1:8080/query", "GraphQL endpoint (host:port alone is accepted too)")
	conc := flag.Int("c", 64, "concurrent clients")
	dur := flag.Duration("d", 10*time.Second, "measured duration")
	warm := flag.Duration("warmup", time.Second, "warm-up before measuring (not counted)")
	query := flag.String("query", "typename", "typename or createjob")
	token := flag.String("token", "", "bearer token sent in Authorization (none when empty)")
	flag.Parse()

	doc, ok := documents[*query]
	if !ok {
		fmt.Fprintf(os.Stderr, "httpload: unknown -query %q (typename or createjob)\n", *query)
		os.Exit(2)
	}
	u := *target
	if !strings.Contains(u, "://") {
		u = "http://" + u + "/query"
	}
	u = strings.Replace(u, "://[::]:", "://127.0.0.1:", 1)
	u = strings.Replace(u, "://0.0.0.0:", "://127.0.0.1:", 1)
	body, _ := json.Marshal(map[string]any{"query": doc})

	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        *conc,
			MaxIdleConnsPerHost: *conc,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}

	start := time.Now()
	measureFrom := start.Add(*warm)
	end := measureFrom.Add(*dur)
	ctx, cancel := context.WithDeadline(context.Background(), end.Add(5*time.Second))
	defer cancel()

	workers := make([]*worker, *conc)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{latencies: make([]int64, 0, 4096)}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				err := do(ctx, client, u, *token, body)
				t1 := time.Now()
				if t0.Before(measureFrom) || t1.After(end) {
					continue // warm-up, or finished past the end
				}
				w.requests++
				w.latencies = append(w.latencies, t1.Sub(t0).Nanoseconds())
				if err != nil {
					w.errors++
					if w.firstErr == "" {
						w.firstErr = err.Error()
					}
				}
			}
		}()
	}
	wg.Wait()

	var all []int64
	var reqs, errs int64
	firstErr := ""
	for _, w := range workers {
		all = append(all, w.latencies...)
		reqs += w.requests
		errs += w.errors
		if firstErr == "" {
			firstErr = w.firstErr
		}
	}
	slices.Sort(all)
	rps := float64(reqs) / dur.Seconds()
	res := map[string]any{
		"tool":        "httpload",
		"url":         u,
		"query":       *query,
		"concurrency": *conc,
		"duration_s":  dur.Seconds(),
		"requests":    reqs,
		"rps":         round(rps, 1),
		"errors":      errs,
		"p50_ms":      ms(percentile(all, 0.50)),
		"p99_ms":      ms(percentile(all, 0.99)),
	}
	if len(all) > 0 {
		res["max_ms"] = ms(all[len(all)-1])
	}
	if firstErr != "" {
		res["first_error"] = firstErr
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	fmt.Fprintf(os.Stderr, "httpload %s c=%d %s: %.0f req/s, %d errors, p50 %.2f ms, p99 %.2f ms\n",
		*query, *conc, *dur, rps, errs, ms(percentile(all, 0.50)), ms(percentile(all, 0.99)))
	if reqs == errs {
		fmt.Fprintln(os.Stderr, "httpload: no request succeeded:", firstErr)
		os.Exit(1)
	}
}

// do sends one request and says whether it failed.
func do(ctx context.Context, c *http.Client, u, token string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s: %s", resp.Status, trunc(data))
	}
	var r struct {
		Data   json.RawMessage `json:"data"`
		Errors json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("bad JSON: %w: %s", err, trunc(data))
	}
	if len(r.Errors) > 0 && string(r.Errors) != "null" {
		return errors.New("GraphQL errors: " + trunc(data))
	}
	if len(r.Data) == 0 || string(r.Data) == "null" {
		return errors.New("no data: " + trunc(data))
	}
	return nil
}

func percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(ns int64) float64 { return round(float64(ns)/1e6, 3) }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func trunc(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}
