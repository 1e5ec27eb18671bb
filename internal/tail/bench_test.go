package tail

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func BenchmarkFollowRead(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "syslog")
	f, _ := os.Create(p)
	line := "2024-10-21T04:49:01.801940+00:00 ip-172-31-20-5 CRON[2978]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)\n"
	buf := make([]byte, 0, 64<<20)
	for len(buf) < 64<<20 {
		buf = append(buf, line...)
	}
	f.Write(buf)
	f.Close()
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st := filepath.Join(dir, fmt.Sprint("st", i))
		fo := New(Options{Path: p, StateDir: st, FromStart: true, CheckpointEvery: time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		fo.Run(ctx, func(l []Line, ack func()) error {
			ack()
			if fo.Stats.Bytes.Load() >= uint64(len(buf)) {
				cancel()
			}
			return nil
		})
	}
}
