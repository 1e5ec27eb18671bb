package report

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// The page in a real browser: Debian's headless Chromium loads it (file://,
// nothing else reachable) and the DOM it built holds the six drawn lines;
// its screenshot holds the CPU line's red. Skips where Chromium is missing;
// CI installs it.
func TestHTMLReportRendersInChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (apt install chromium)")
	}
	recs, id := recorded(t)
	r, _ := Build(recs, id, 0, "")
	dir := t.TempDir()
	page := filepath.Join(dir, "incident.html")
	var b bytes.Buffer
	if err := r.HTML(&b, time.UTC); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(page, b.Bytes(), 0o644)
	run := func(args ...string) []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=" + filepath.Join(dir, "profile"), "--window-size=1000,1400"}
		out, err := exec.CommandContext(ctx, bin, append(base, args...)...).Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return out
	}
	dom := run("--dump-dom", "file://"+page)
	if n := len(regexp.MustCompile(`<path d="M[0-9.]+,[0-9.]+ L`).FindAll(dom, -1)); n != 6 {
		t.Errorf("the rendered DOM has %d drawn lines, want 6", n)
	}
	shot := filepath.Join(dir, "shot.png")
	run("--screenshot="+shot, "file://"+page)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	red := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r>>8 > 180 && g>>8 < 90 && bl>>8 < 90 { // #d62728, the CPU line
				red++
			}
		}
	}
	if red < 500 {
		t.Errorf("%d red pixels in the screenshot: the CPU chart did not render", red)
	}
}
