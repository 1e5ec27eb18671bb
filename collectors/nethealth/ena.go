package nethealth

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// allowance counters: EC2 queued or dropped packets for exceeding the
// instance's allowance. Any increase means degraded.
var allowances = []string{"bw_in_allowance_exceeded", "bw_out_allowance_exceeded", "pps_allowance_exceeded",
	"conntrack_allowance_exceeded", "linklocal_allowance_exceeded"}

// faults are driver counters whose increase means the device misbehaved.
var faults = []string{"total_resets", "tx_timeout", "wd_expired", "missing_intr", "suspected_poll_starvation", "missing_tx_cmpl", "admin_to"}

var sysfsCounters = []string{"carrier_changes", "carrier_down_count", "carrier_up_count",
	"statistics/rx_errors", "statistics/tx_errors", "statistics/rx_dropped", "statistics/tx_dropped", "statistics/rx_over_errors",
	"statistics/rx_packets", "statistics/tx_packets", "statistics/rx_bytes", "statistics/tx_bytes"}

func (c *Checker) ena() []Device {
	netDir := filepath.Join(c.SysRoot, "class", "net")
	ents, err := os.ReadDir(netDir)
	if err != nil {
		return nil
	}
	version, _ := readString(filepath.Join(c.SysRoot, "module", "ena", "version"))
	var out []Device
	for _, e := range ents {
		dir := filepath.Join(netDir, e.Name())
		// By driver, never by name: ens5, eth0, enX0 are all ENA somewhere.
		if driverOf(dir) != "ena" {
			continue
		}
		d := Device{Name: e.Name(), Kind: "ena", State: OK, PCI: pciOf(dir), Driver: version, Figures: map[string]float64{}}
		cur := map[string]uint64{}
		for _, name := range sysfsCounters {
			v, err := readUint(filepath.Join(dir, name))
			if err != nil {
				d.Unreadable = append(d.Unreadable, name)
				continue
			}
			cur[strings.TrimPrefix(name, "statistics/")] = v
		}
		for _, name := range []string{"mtu", "carrier", "device/numa_node"} {
			if v, err := readUint(filepath.Join(dir, name)); err == nil {
				d.Figures[filepath.Base(name)] = float64(v)
			} else if name != "carrier" || !absent(err) {
				d.Unreadable = append(d.Unreadable, name)
			}
		}
		if q, err := filepath.Glob(filepath.Join(dir, "queues", "tx-*")); err == nil {
			d.Figures["tx_queues"] = float64(len(q))
		}
		flags, ferr := readUint(filepath.Join(dir, "flags"))
		oper, oerr := readString(filepath.Join(dir, "operstate"))
		if c.Stats != nil {
			st, err := c.Stats(e.Name())
			if err != nil {
				d.Unreadable = append(d.Unreadable, "ethtool statistics ("+err.Error()+")")
			}
			for k, v := range st {
				cur[k] = v
			}
		}
		c.delta("ena/"+e.Name(), cur, &d)

		switch {
		case ferr == nil && flags&1 == 0:
			d.worsen(Down)
			d.reason("interface administratively down")
		case oerr != nil:
			d.worsen(Down)
			d.reason("operstate unreadable: %v", oerr)
		case oper != "up":
			d.worsen(Down)
			d.reason("operstate %s", oper)
		}
		if v, ok := d.Figures["carrier"]; ok && v == 0 {
			d.worsen(Down)
			d.reason("no carrier")
		}
		if d.Deltas["reset_fail"] > 0 {
			d.worsen(Down)
			d.reason("device reset failed %d times", d.Deltas["reset_fail"])
		}
		for _, a := range allowances {
			if n := d.Deltas[a]; n > 0 {
				d.worsen(Degraded)
				d.reason("%s rose by %d (packets queued or dropped by EC2 for exceeding the instance's allowance)", a, n)
			}
		}
		if n := d.Deltas["carrier_down_count"]; n > 0 {
			d.worsen(Degraded)
			d.reason("carrier went down %d times (flaps or device resets)", n)
		}
		for _, f := range faults {
			if n := d.Deltas[f]; n > 0 {
				d.worsen(Degraded)
				d.reason("%s rose by %d", f, n)
			}
		}
		var drops []string
		for _, s := range []string{"rx_dropped", "tx_dropped", "rx_over_errors", "rx_errors", "tx_errors"} {
			if n := d.Deltas[s]; n > 0 {
				drops = append(drops, s)
			}
		}
		if len(drops) > 0 {
			sort.Strings(drops)
			d.worsen(Degraded)
			d.reason("drops or errors rising: %s", strings.Join(drops, ", "))
		}
		if avail, ok := d.Figures["conntrack_allowance_available"]; ok {
			k := "ena/" + e.Name()
			c.maxConn[k] = max(c.maxConn[k], uint64(avail))
			if m := c.maxConn[k]; m > 0 && avail < float64(m)/10 {
				d.worsen(Degraded)
				d.reason("connection tracking nearly exhausted: %.0f of %d connections left", avail, m)
			}
		}
		if d.Reasons == nil {
			d.Reasons = []string{}
		}
		out = append(out, d)
	}
	return out
}
