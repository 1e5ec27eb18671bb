// Command hog is the load the VM test's scenarios run inside the guest: it
// eats memory fast, holds the machine at the edge of memory so it thrashes,
// or leaks memory while burning CPU like a runaway service. Built static on
// the host and copied in (the guest has no compiler or Python).
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

const mib = 1 << 20

func main() {
	debug.SetGCPercent(-1) // every byte allocated stays: we want RSS, not GC work
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hog mem MIB_PER_S | thrash PCT | leak MIB_PER_S")
		os.Exit(2)
	}
	arg := func(def int) int {
		if len(os.Args) > 2 {
			if n, err := strconv.Atoi(os.Args[2]); err == nil {
				return n
			}
		}
		return def
	}
	switch os.Args[1] {
	case "mem":
		grow(arg(200), 0, false)
	case "thrash":
		pct := 0.3
		if len(os.Args) > 2 {
			if f, err := strconv.ParseFloat(os.Args[2], 64); err == nil {
				pct = f
			}
		}
		thrash(pct)
	case "leak":
		for i := 1; i < runtime.NumCPU(); i++ {
			go burn()
		}
		grow(arg(10), 0, true)
	default:
		os.Exit(2)
	}
}

var held [][]byte

// grow allocates rate MiB per second, touching every page, until killed
// (or until MemAvailable falls to stopPct, if set).
func grow(rate, stopPct int, spin bool) {
	for {
		start := time.Now()
		for i := 0; i < rate; i++ {
			b := make([]byte, mib)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			held = append(held, b)
		}
		if stopPct > 0 && availPct() <= float64(stopPct) {
			return
		}
		if d := time.Second - time.Since(start); d > 0 {
			if spin {
				for time.Since(start) < time.Second {
				}
			} else {
				time.Sleep(d)
			}
		}
	}
}

// thrash fills memory until MemAvailable is pct% of the total and then
// keeps it there, re-touching its pages: with no swap, the kernel can only
// evict file pages (program text), which every process then faults back
// in. The machine livelocks without the OOM killer firing.
func thrash(pct float64) {
	for {
		a := availPct()
		switch {
		case a > pct+3:
			grow(8, int(pct)+3, false)
		case a > pct:
			b := make([]byte, mib/4)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			held = append(held, b)
		}
		for _, b := range held {
			for j := 0; j < len(b); j += 4096 {
				b[j]++
			}
		}
	}
}

func burn() {
	for {
	}
}

func availPct() float64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 100
	}
	defer f.Close()
	var total, avail float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(fs[1], 64)
		switch fs[0] {
		case "MemTotal:":
			total = v
		case "MemAvailable:":
			avail = v
		}
	}
	if total == 0 {
		return 100
	}
	return 100 * avail / total
}
