// Command tailbench measures the syslog reader on a large file: the tailer
// alone, and tailer + parser, reported next to a plain read of the same file
// measured in the same run. See bench/tail.sh.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/ec2diag/ec2diag/internal/syslog"
	"github.com/ec2diag/ec2diag/internal/tail"
)

func main() {
	file := flag.String("file", "", "file to read (made with -gen if missing)")
	gen := flag.Int("gen-mb", 0, "generate a syslog-like file of this many MiB first")
	mode := flag.String("mode", "parse", "read (tailer only) or parse (tailer + parser)")
	flag.Parse()
	if *gen > 0 {
		if err := generate(*file, int64(*gen)<<20); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	fi, err := os.Stat(*file)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	state, _ := os.MkdirTemp("", "tailbench")
	defer os.RemoveAll(state)
	f := tail.New(tail.Options{Path: *file, StateDir: state, FromStart: true, CheckpointEvery: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	var lines, parsed int64
	var ms0, ms1 runtime.MemStats
	p := &syslog.Parser{}
	var l syslog.Line
	runtime.ReadMemStats(&ms0)
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	go func() {
		f.Run(ctx, func(b []tail.Line, ack func()) error {
			lines += int64(len(b))
			if *mode == "parse" {
				for i := range b {
					p.Parse(b[i].Data, &l)
					if l.Parsed {
						parsed++
					}
				}
			}
			ack()
			if f.Stats.Bytes.Load() >= uint64(fi.Size()) && lines > 0 {
				cancel()
			}
			return nil
		})
	}()
	<-ctx.Done()
	el := time.Since(start)
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	runtime.ReadMemStats(&ms1)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
	fmt.Printf("mode=%s lines=%d parsed=%d seconds=%.3f cpu_seconds=%.3f lines_per_s=%.0f mb_per_s=%.1f allocs_per_line=%.4f maxrss_mib=%.1f\n",
		*mode, lines, parsed, el.Seconds(), cpu.Seconds(), float64(lines)/el.Seconds(), float64(fi.Size())/1e6/el.Seconds(),
		float64(ms1.Mallocs-ms0.Mallocs)/float64(max(lines, 1)), float64(ru1.Maxrss)/1024)
}

// generate writes realistic rsyslog lines: a mix of cron, systemd, kernel
// and sshd, ~110 bytes each.
func generate(path string, size int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	t := time.Date(2024, 10, 21, 0, 0, 0, 0, time.UTC)
	msgs := []string{
		"CRON[%d]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
		"systemd[1]: Starting sysstat-collect.service - system activity accounting tool...",
		"kernel: [%d.123456] ena 0000:00:05.0 ens5: Found a Tx that wasn't completed on time",
		"sshd[%d]: Accepted publickey for ubuntu from 10.0.0.1 port 51514 ssh2: ED25519 SHA256:abc",
		"systemd[1]: sysstat-collect.service: Deactivated successfully.",
	}
	var n int64
	for i := 0; n < size; i++ {
		t = t.Add(time.Millisecond * 7)
		m := msgs[i%len(msgs)]
		var s string
		if i%len(msgs) == 1 || i%len(msgs) == 4 {
			s = m
		} else {
			s = fmt.Sprintf(m, 1000+i%30000)
		}
		k, err := fmt.Fprintf(w, "%s ip-172-31-20-5 %s\n", t.Format("2006-01-02T15:04:05.000000-07:00"), s)
		if err != nil {
			return err
		}
		n += int64(k)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	_, err = io.WriteString(os.Stderr, fmt.Sprintf("generated %s: %d bytes\n", path, n))
	return err
}
