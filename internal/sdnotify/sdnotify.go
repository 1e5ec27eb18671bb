// Package sdnotify tells systemd about the agent's lifecycle through
// go-systemd's daemon package. Without NOTIFY_SOCKET every call is a no-op,
// so the same binary runs in a terminal, in tests and under systemd.
package sdnotify

import (
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends state changes; the zero value is ready to use.
type Notifier struct {
	// OnError sees send failures (a vanished socket); nil ignores them.
	OnError func(error)
}

func (n Notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil && n.OnError != nil {
		n.OnError(err)
	}
}

// Ready says start-up is complete.
func (n Notifier) Ready() { n.send(daemon.SdNotifyReady) }

// Reloading opens a reload. systemd 253+ wants MONOTONIC_USEC in the same
// datagram; 252 ignores it, so send it always.
func (n Notifier) Reloading() {
	n.send(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec())
}

// Stopping says shutdown has begun.
func (n Notifier) Stopping() { n.send(daemon.SdNotifyStopping) }

// Watchdog pings the service watchdog.
func (n Notifier) Watchdog() { n.send(daemon.SdNotifyWatchdog) }

// Status sets the one line shown by systemctl status. Newlines would start
// new assignments in the datagram, so they are folded.
func (n Notifier) Status(s string) {
	n.send("STATUS=" + strings.ReplaceAll(s, "\n", " "))
}

// WatchdogInterval is how often to ping: half of WATCHDOG_USEC, or 0 when
// systemd expects no pings from this process.
func WatchdogInterval() time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}
