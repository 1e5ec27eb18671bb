package procinfo

import (
	"strconv"
	"strings"
)

// Classify says what a cgroup path means. The innermost element that
// names something wins: a container inside a service is the container, a
// service inside a user's manager is that user's service.
//
//	/system.slice/etl.service                                   service etl.service
//	/user.slice/user-1000.slice/session-3.scope                 session 3 of uid 1000
//	/user.slice/user-1000.slice/user@1000.service/app.slice/x.service  user-service x.service
//	/system.slice/docker-<64 hex>.scope, /docker/<64 hex>       container (docker)
//	/system.slice/containerd.service/.../cri-containerd-<id>.scope, /kubepods/...  container
//	/machine.slice/libpod-<id>.scope                            container (podman)
func Classify(path string) Group {
	var g Group
	els := strings.Split(strings.Trim(path, "/"), "/")
	for _, el := range els {
		if u, ok := sliceUID(el); ok {
			g.UID = u
		}
	}
	for i := len(els) - 1; i >= 0; i-- {
		el := els[i]
		if id, rt := containerID(el, els[:i]); id != "" {
			g.Kind, g.Name, g.Runtime = "container", id, rt
			return g
		}
	}
	for i := len(els) - 1; i >= 0; i-- {
		el := els[i]
		switch {
		case strings.HasPrefix(el, "session-") && strings.HasSuffix(el, ".scope"):
			g.Kind, g.Name = "session", el
			g.Session = strings.TrimSuffix(strings.TrimPrefix(el, "session-"), ".scope")
			return g
		case strings.HasSuffix(el, ".service") && !strings.HasPrefix(el, "user@"):
			g.Kind, g.Name = "service", el
			if inUserManager(els[:i]) {
				g.Kind = "user-service"
			}
			return g
		case strings.HasSuffix(el, ".scope"), strings.HasPrefix(el, "user@") && strings.HasSuffix(el, ".service"):
			g.Kind, g.Name = "system", el
			return g
		}
	}
	return g
}

// SystemUnit is the system manager's unit whose cgroup holds path (or a
// cgroup delegated below it): /system.slice/x.service, or a unit of a
// slice of the system's (/system.slice/etl.slice/x.service,
// /batch.slice/x.service). A unit of the same name in a user's manager
// (user.slice/.../user@1000.service/app.slice/x.service), a container's
// or a VM's (machine.slice) is not: a timer of that name logged by
// someone else must not claim its processes.
func SystemUnit(path string) string {
	els := strings.Split(strings.Trim(path, "/"), "/")
	if len(els) < 2 || els[0] == "user.slice" || els[0] == "machine.slice" {
		return ""
	}
	for i, el := range els {
		if strings.HasSuffix(el, ".slice") {
			continue
		}
		if i > 0 && (strings.HasSuffix(el, ".service") || strings.HasSuffix(el, ".scope")) {
			return el
		}
		return ""
	}
	return ""
}

func inUserManager(els []string) bool {
	for _, el := range els {
		if strings.HasPrefix(el, "user@") && strings.HasSuffix(el, ".service") {
			return true
		}
	}
	return false
}

func sliceUID(el string) (int, bool) {
	s, ok := strings.CutPrefix(el, "user-")
	if !ok || !strings.HasSuffix(s, ".slice") {
		return 0, false
	}
	u, err := strconv.Atoi(strings.TrimSuffix(s, ".slice"))
	return u, err == nil && u >= 0
}

// containerID recognises the cgroup names container runtimes give: a
// runtime prefix and a hex id (".scope" under systemd's cgroup driver),
// or a bare 64-hex element under a runtime's own hierarchy.
func containerID(el string, parents []string) (id, runtime string) {
	for _, p := range []struct{ prefix, rt string }{{"docker-", "docker"}, {"cri-containerd-", "containerd"}, {"crio-", "cri-o"}, {"libpod-", "podman"}} {
		if s, ok := strings.CutPrefix(el, p.prefix); ok {
			s = strings.TrimSuffix(s, ".scope")
			if isHex(s) && len(s) >= 12 {
				return s, p.rt
			}
		}
	}
	if isHex(el) && len(el) == 64 && len(parents) > 0 {
		for _, p := range parents {
			switch {
			case p == "docker":
				return el, "docker"
			case strings.HasPrefix(p, "kubepods"):
				return el, "kubepods"
			case p == "containerd" || strings.HasPrefix(p, "containerd"):
				return el, "containerd"
			}
		}
	}
	return "", ""
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// String names the group the way people say it.
func (g Group) String() string {
	switch g.Kind {
	case "service":
		return "service " + g.Name
	case "user-service":
		return "user service " + g.Name
	case "session":
		return "session " + g.Session
	case "container":
		s := "container " + short(g.Name)
		if g.ContainerName != "" {
			s += " (" + g.ContainerName + ")"
		}
		return s
	case "system":
		return g.Name
	}
	return ""
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
