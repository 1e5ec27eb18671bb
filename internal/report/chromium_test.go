package report

import (
	"bytes"
	"context"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/ec2diag/ec2diag/internal/testkit"
)

// The page in a real browser: Debian's headless Chromium loads it (file://,
// nothing else reachable) and the DOM it built holds the six drawn lines;
// its screenshot holds the CPU line's red. Skips where Chromium is missing;
// CI installs it.
func TestHTMLReportRendersInChromium(t *testing.T) {
	bin := testkit.RequireTool(t, "chromium")
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
	if d := os.Getenv("EC2DIAG_SHOT"); d != "" { // keep it for a person to look at
		shot = d
	}
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
	// The CPU line (#d62728) drawn across its chart, rising and falling
	// with the spike: not a legend swatch or a stray red mark.
	red := 0
	bounds := img.Bounds()
	x0, x1, y0, y1 := bounds.Max.X, bounds.Min.X, bounds.Max.Y, bounds.Min.Y
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			if isRed(img.At(x, y)) {
				red++
				x0, x1, y0, y1 = min(x0, x), max(x1, x), min(y0, y), max(y1, y)
			}
		}
	}
	t.Logf("red: %d pixels spanning x %d-%d, y %d-%d of %v", red, x0, x1, y0, y1, bounds.Size())
	if red < 500 || x1-x0 < bounds.Dx()/2 {
		t.Fatalf("%d red pixels spanning x %d-%d: the CPU chart did not render across its width", red, x0, x1)
	}
	// The topmost red is the CPU line at 100%; the chart is the band
	// below it, as tall as the page draws 0-100 (135 px here).
	// Red ticks for kernel events cross it top to bottom; the line is
	// the rest: continuous across the band, at the bottom before onset
	// and at the top during the spike.
	const band = 140
	cols, low, high := 0, 0, 0
	bx0, bx1 := -1, -1
	for x := x0; x <= x1; x++ {
		top, bottom := -1, -1
		for y := y0; y <= y0+band && y < bounds.Max.Y; y++ {
			if isRed(img.At(x, y)) {
				if top < 0 {
					top = y
				}
				bottom = y
			}
		}
		if top < 0 {
			continue
		}
		if bx0 < 0 {
			bx0 = x
		}
		bx1 = x
		cols++
		switch {
		case top > y0+band-15:
			low++ // idle, before onset
		case bottom < y0+15:
			high++ // 100% busy
		}
	}
	w := bx1 - bx0 + 1
	t.Logf("CPU line: red in %d of %d columns (x %d-%d), %d at 0%%, %d at 100%%", cols, w, bx0, bx1, low, high)
	if w < bounds.Dx()/2 || cols < w*9/10 || low < 50 || high < 50 {
		t.Errorf("the CPU line is in %d of %d columns, %d of them idle and %d at 100%%: not drawn as the recorded spike", cols, w, low, high)
	}
}

// isRed is #d62728 as drawn, anti-aliased over white or a grey axis.
func isRed(c color.Color) bool {
	r, g, b, _ := c.RGBA()
	r, g, b = r>>8, g>>8, b>>8
	return r > 150 && r > g+60 && r > b+60
}
