// Package utmp reads the one fact ec2diag wants from /run/utmp: when the
// system reached its run level, which systemd-update-utmp records as the
// boot's last step ("who -r"). An agent started after systemd logged
// "Startup finished" (installed on a running machine, restarted) never
// reads that line; the run-level record says the same, in a file anyone
// can read.
package utmp

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"time"
)

// The glibc record (x86_64 and aarch64 alike: __WORDSIZE_TIME64_COMPAT32
// keeps ut_session and ut_tv 32-bit): ut_type at 0 (int16), ut_tv.tv_sec
// at 340 (int32), 384 bytes in all.
const (
	recordSize = 384
	offType    = 0
	offSec     = 340
	typeRunLvl = 1
	maxRecords = 4096 // a utmp of logins; the run level is near the start
)

// ErrNoRunLevel says the file holds no run-level record: the boot has not
// reached its target yet, or nothing keeps utmp.
var ErrNoRunLevel = errors.New("utmp: no run-level record")

// RunLevelTime returns the time of the last run-level record in path.
func RunLevelTime(path string) (time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	var last time.Time
	buf := make([]byte, recordSize)
	for i := 0; i < maxRecords; i++ {
		if _, err := io.ReadFull(f, buf); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return time.Time{}, errors.New("utmp: a record cut short: not glibc's 384-byte layout")
			}
			return time.Time{}, err
		}
		if int16(binary.LittleEndian.Uint16(buf[offType:])) == typeRunLvl {
			if sec := int32(binary.LittleEndian.Uint32(buf[offSec:])); sec > 0 {
				last = time.Unix(int64(sec), 0)
			}
		}
	}
	if last.IsZero() {
		return last, ErrNoRunLevel
	}
	return last, nil
}
