package logsource

import (
	"testing"
	"time"
)

// Lines as `journalctl -o json` prints them on Debian 12 (systemd 252).
func TestParseJournalJSON(t *testing.T) {
	for _, tc := range []struct {
		name, line      string
		prog, msg, host string
		pid             int
		t               time.Time
		wantErr         bool
	}{
		{"cron CMD", `{"__CURSOR":"s=8f0f;i=1a2;b=77;m=1f;t=624e;x=9c","__REALTIME_TIMESTAMP":"1729486141801940","__MONOTONIC_TIMESTAMP":"1234","_BOOT_ID":"77","SYSLOG_FACILITY":"9","SYSLOG_IDENTIFIER":"CRON","SYSLOG_PID":"2978","_PID":"2978","_COMM":"cron","_HOSTNAME":"ip-172-31-20-5","PRIORITY":"6","MESSAGE":"(root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)","_TRANSPORT":"syslog"}`,
			"CRON", "(root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)", "ip-172-31-20-5", 2978, time.UnixMicro(1729486141801940), false},
		{"kernel, no SYSLOG_PID", `{"__CURSOR":"c2","__REALTIME_TIMESTAMP":"1729486141000000","SYSLOG_IDENTIFIER":"kernel","_HOSTNAME":"h","MESSAGE":"Out of memory: Killed process 4242 (java)","_TRANSPORT":"kernel"}`,
			"kernel", "Out of memory: Killed process 4242 (java)", "h", 0, time.UnixMicro(1729486141000000), false},
		{"binary MESSAGE as bytes", `{"__CURSOR":"c3","__REALTIME_TIMESTAMP":"1729486141000000","_COMM":"app","_PID":"7","MESSAGE":[104,105,255]}`,
			"app", "hi\xff", "", 7, time.UnixMicro(1729486141000000), false},
		{"null MESSAGE", `{"__CURSOR":"c4","__REALTIME_TIMESTAMP":"1","MESSAGE":null}`, "", "", "", 0, time.UnixMicro(1), false},
		{"bad timestamp", `{"__CURSOR":"c5","__REALTIME_TIMESTAMP":"soon","MESSAGE":"x"}`, "", "", "", 0, time.Time{}, true},
		{"not JSON", `{"__CURSOR":`, "", "", "", 0, time.Time{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ParseJournalJSON([]byte(tc.line))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if string(e.Line.Program) != tc.prog || string(e.Line.Message) != tc.msg || string(e.Line.Host) != tc.host || e.Line.PID != tc.pid || !e.Line.Time.Equal(tc.t) || e.Cursor == "" {
				t.Errorf("got prog=%q msg=%q host=%q pid=%d t=%v cursor=%q", e.Line.Program, e.Line.Message, e.Line.Host, e.Line.PID, e.Line.Time, e.Cursor)
			}
		})
	}
}

func FuzzParseJournalJSON(f *testing.F) {
	f.Add([]byte(`{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","MESSAGE":[1,2,300]}`))
	f.Fuzz(func(t *testing.T, b []byte) { ParseJournalJSON(b) })
}
