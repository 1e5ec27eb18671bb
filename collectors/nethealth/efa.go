package nethealth

import (
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
)

func (c *Checker) efa() []Device {
	ibDir := filepath.Join(c.SysRoot, "class", "infiniband")
	ents := c.entries(ibDir)
	if ents == nil {
		return nil
	}
	var macs map[string]string
	var out []Device
	for _, e := range ents {
		dir := filepath.Join(ibDir, e.Name())
		if c.full {
			id := ident{driver: driverOf(dir)}
			if id.driver == "efa" {
				id.pci = pciOf(dir)
				id.ports, _ = filepath.Glob(filepath.Join(dir, "ports", "*"))
				id.figures = map[string]float64{}
				if macs == nil {
					macs = c.macs()
				}
				for _, p := range id.ports {
					if rate, err := readString(filepath.Join(p, "rate")); err == nil {
						var gbps float64
						if _, err := fmt.Sscan(rate, &gbps); err == nil { // "100 Gb/sec (4X EDR)"
							id.figures["rate_gbps"] = gbps
						}
					}
					if gid, err := readString(filepath.Join(p, "gids", "0")); err == nil && id.netdev == "" {
						id.netdev = macs[eui64MAC(gid)]
					}
				}
			}
			c.ids[dir] = id
		}
		id := c.ids[dir]
		if id.driver != "efa" {
			continue
		}
		d := Device{Name: e.Name(), Kind: "efa", State: OK, PCI: id.pci, Netdev: id.netdev, Figures: maps.Clone(id.figures)}
		// Every counter the device exposes, device and port level, by name:
		// other tools read a fixed (Mellanox) list and drop EFA's.
		cur := make(map[string]uint64, 64)
		c.readCounters(filepath.Join(dir, "hw_counters"), cur, &d)
		if len(id.ports) == 0 {
			d.worsen(Down)
			d.reason("no ports")
		}
		for _, p := range id.ports {
			port := filepath.Base(p)
			c.readCounters(filepath.Join(p, "hw_counters"), cur, &d)
			state, err1 := c.read(p, "state")
			phys, err2 := c.read(p, "phys_state")
			if err1 != nil || !strings.Contains(state, "ACTIVE") {
				d.worsen(Down)
				d.reason("port %s state %q", port, state)
			}
			if err2 != nil || !strings.Contains(phys, "LinkUp") {
				d.worsen(Down)
				d.reason("port %s physical state %q", port, phys)
			}
		}
		c.delta("efa/"+d.PCI+"/"+e.Name(), cur, &d)
		for _, k := range sortedKeys(d.Deltas) {
			if n := d.Deltas[k]; n > 0 && rising(k) {
				d.worsen(Degraded)
				d.reason("%s rose by %d", k, n)
			}
		}
		if d.Reasons == nil {
			d.Reasons = []string{}
		}
		out = append(out, d)
	}
	return out
}

// hot counters are read at every check: those health judges (rising)
// and those published as metrics. The rest wait for full checks.
func hot(name string) bool {
	return rising(name) || published[name]
}

// rising counters that mean trouble: drops, errors, timeouts, remote
// peers unresponsive or impaired.
func rising(name string) bool {
	for _, s := range []string{"drop", "err", "timeout", "no_completion", "unresponsive", "impaired"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

func (c *Checker) readCounters(dir string, into map[string]uint64, d *Device) {
	if c.full || c.efaAll[dir] == nil {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		var all, hots []string
		for _, e := range ents {
			if e.Name() == "lifespan" || e.IsDir() {
				continue
			}
			all = append(all, e.Name())
			if hot(e.Name()) {
				hots = append(hots, e.Name())
			}
		}
		c.efaAll[dir], c.efaNames[dir] = all, hots
	}
	names := c.efaNames[dir]
	if c.full {
		names = c.efaAll[dir]
	}
	for _, n := range names {
		v, err := c.readUint(dir, n)
		if err != nil {
			d.Unreadable = append(d.Unreadable, "hw_counters/"+n)
			continue
		}
		into[n] += v
	}
}

// eui64MAC turns an fe80:: GID built from the ENI's MAC (EUI-64) back into
// the MAC, to find the ENA interface of the same ENI.
func eui64MAC(gid string) string {
	ip := net.ParseIP(gid)
	if ip == nil || len(ip) != net.IPv6len || ip[11] != 0xff || ip[12] != 0xfe {
		return ""
	}
	mac := net.HardwareAddr{ip[8] ^ 0x02, ip[9], ip[10], ip[13], ip[14], ip[15]}
	return mac.String()
}

func (c *Checker) macs() map[string]string {
	out := map[string]string{}
	ents, _ := os.ReadDir(filepath.Join(c.SysRoot, "class", "net"))
	for _, e := range ents {
		if a, err := readString(filepath.Join(c.SysRoot, "class", "net", e.Name(), "address")); err == nil {
			out[strings.ToLower(a)] = e.Name()
		}
	}
	return out
}
