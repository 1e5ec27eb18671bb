package nethealth

import (
	"maps"
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

// sysfsCounters are read at every check: health depends on them.
var sysfsCounters = []string{"carrier_changes", "carrier_down_count",
	"statistics/rx_errors", "statistics/tx_errors", "statistics/rx_dropped", "statistics/tx_dropped", "statistics/rx_over_errors"}

// infoCounters are evidence only, read at full checks.
var infoCounters = []string{"carrier_up_count", "statistics/rx_packets", "statistics/tx_packets", "statistics/rx_bytes", "statistics/tx_bytes"}

func (c *Checker) ena() []Device {
	netDir := filepath.Join(c.SysRoot, "class", "net")
	ents := c.entries(netDir)
	if ents == nil {
		return nil
	}
	if c.full {
		c.enaVersion, _ = readString(filepath.Join(c.SysRoot, "module", "ena", "version"))
	}
	var out []Device
	for _, e := range ents {
		dir := filepath.Join(netDir, e.Name())
		if c.full {
			c.identify(dir)
		}
		id := c.ids[dir]
		// By driver, never by name: ens5, eth0, enX0 are all ENA somewhere.
		if id.driver != "ena" {
			continue
		}
		d := Device{Name: e.Name(), Kind: "ena", State: OK, PCI: id.pci, Driver: c.enaVersion, Figures: maps.Clone(id.figures)}
		cur := make(map[string]uint64, 64)
		names := sysfsCounters
		if c.full {
			names = append(names[:len(names):len(names)], infoCounters...)
		}
		for _, name := range names {
			v, err := c.readUint(dir, name)
			if err != nil {
				d.Unreadable = append(d.Unreadable, name)
				continue
			}
			cur[strings.TrimPrefix(name, "statistics/")] = v
		}
		if v, err := c.readUint(dir, "carrier"); err == nil {
			d.Figures["carrier"] = float64(v)
		} else if !absent(err) {
			d.Unreadable = append(d.Unreadable, "carrier")
		}
		flags, ferr := c.readUint(dir, "flags")
		oper, oerr := c.read(dir, "operstate")
		if c.Stats != nil {
			st, err := c.Stats(e.Name())
			if err != nil {
				d.Unreadable = append(d.Unreadable, "ethtool statistics ("+err.Error()+")")
			}
			for k, v := range st {
				// Per-queue counters are evidence, not health: full checks.
				if c.full || !strings.HasPrefix(k, "queue_") {
					cur[k] = v
				}
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

// identify reads what does not change while the device exists: its
// driver and PCI address (readlinks), MTU, NUMA node and queue count.
func (c *Checker) identify(dir string) {
	id := ident{driver: driverOf(dir), figures: map[string]float64{}}
	if id.driver != "ena" {
		c.ids[dir] = id
		return
	}
	id.pci = pciOf(dir)
	for _, name := range []string{"mtu", "device/numa_node"} {
		if v, err := readUint(filepath.Join(dir, name)); err == nil {
			id.figures[filepath.Base(name)] = float64(v)
		}
	}
	if q, err := filepath.Glob(filepath.Join(dir, "queues", "tx-*")); err == nil {
		id.figures["tx_queues"] = float64(len(q))
	}
	c.ids[dir] = id
}
