package kcrash

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ec2diag/ec2diag/internal/atomicfile"
	"github.com/ec2diag/ec2diag/internal/escape"
	"github.com/ec2diag/ec2diag/internal/hostfs"
)

// CopyDir is where, under the state directory, Copy leaves the dumps for
// the agent: systemd-pstore archives them mode 0600 root, and the agent
// runs unprivileged.
const CopyDir = "kcrash"

// maxCopy bounds a copy's file: a MiB of text, JSON-escaped at worst.
const maxCopy = 6*maxFile + 4096

// copied is one dump as Copy leaves it.
type copied struct {
	Name    string    `json:"name"`
	ModTime time.Time `json:"mod_time"`
	Text    string    `json:"text"`
}

// Copy runs as root before the agent starts (the unit's ExecStartPre=+):
// it copies each dump under root it can read into stateDir/kcrash, owned
// by uid:gid, once (by content). It never reads more than Find does: the
// dmesg files of the three known places, their last MiB each.
func Copy(root hostfs.Root, stateDir string, uid, gid int) (copiedN int, err error) {
	dumps, skipped := find(root)
	dir := filepath.Join(stateDir, CopyDir)
	if len(dumps) > 0 {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return 0, err
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return 0, err
		}
	}
	var errs []error
	for _, d := range dumps {
		p := filepath.Join(dir, d.Key+".json")
		if _, err := os.Stat(p); err == nil {
			continue
		}
		b, _ := json.Marshal(copied{Name: d.Name, ModTime: d.ModTime, Text: d.Text})
		if err := atomicfile.Write(p, b, atomicfile.Options{Durable: true, Perm: 0o640}); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Chown(p, uid, gid); err != nil {
			errs = append(errs, err)
			continue
		}
		copiedN++
	}
	for _, s := range skipped {
		errs = append(errs, errors.New(escape.Control(s)))
	}
	return copiedN, errors.Join(errs...)
}

// readCopies reads what Copy left in dir.
func readCopies(dir string) (dumps []Dump, skipped []string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || len(dumps) >= maxFiles {
			continue
		}
		var c copied
		var b []byte
		info, err := e.Info()
		if err == nil && info.Size() > maxCopy {
			err = errors.New("larger than a copy can be")
		}
		if err == nil {
			b, err = os.ReadFile(filepath.Join(dir, e.Name()))
		}
		if err == nil {
			err = json.Unmarshal(b, &c)
		}
		if err != nil {
			skipped = append(skipped, "copy:"+e.Name()+": "+err.Error())
			continue
		}
		if len(c.Text) > maxFile {
			c.Text = c.Text[len(c.Text)-maxFile:]
		}
		dumps = append(dumps, Dump{Name: c.Name, Key: strings.TrimSuffix(e.Name(), ".json"), ModTime: c.ModTime, Text: c.Text, copy: filepath.Join(dir, e.Name())})
	}
	return dumps, skipped
}

// Forget removes the copies of dumps already recorded: the originals stay
// where the kernel or systemd-pstore put them, and Copy at the next start
// brings back only what is still there.
func Forget(dumps []Dump) error {
	var errs []error
	for _, d := range dumps {
		if d.copy != "" {
			if err := os.Remove(d.copy); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
