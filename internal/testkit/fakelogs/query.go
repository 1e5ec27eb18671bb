package fakelogs

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The subset of Logs Insights the stand-in answers, which is what the
// agent's fleet queries use: commands separated by "|":
//
//	fields a, b, c
//	filter a = "x" and b != "y"        (also: a in ["x", "y"], ispresent(a))
//	stats count(*) as n, latest(c) as c by a, b   (count, count_distinct, earliest, latest, min, max)
//	sort a desc | sort a asc
//	limit N
//
// Fields are the JSON message's, flattened with dots (data.cause), as
// Logs Insights discovers them, plus @timestamp, @logStream, @message.
// Anything else is a MalformedQueryException, as an unknown command is.
type query struct {
	status  string
	results [][]map[string]string
	scanned int
}

func (s *Server) startQuery(w http.ResponseWriter, in map[string]json.RawMessage) {
	var q string
	var groups []string
	var group string
	var start, end int64
	json.Unmarshal(in["queryString"], &q)
	json.Unmarshal(in["logGroupNames"], &groups)
	json.Unmarshal(in["logGroupName"], &group)
	json.Unmarshal(in["startTime"], &start)
	json.Unmarshal(in["endTime"], &end)
	if group != "" {
		groups = append(groups, group)
	}
	if len(groups) == 0 {
		fail(w, 400, "InvalidParameterException", "logGroupName or logGroupNames is required")
		return
	}
	for _, g := range groups {
		if _, ok := s.groups[g]; !ok {
			fail(w, 400, "ResourceNotFoundException", "Log group "+g+" does not exist")
			return
		}
	}
	plan, err := parse(q)
	if err != nil {
		fail(w, 400, "MalformedQueryException", err.Error())
		return
	}
	res, scanned := s.runQuery(plan, groups, start*1000, end*1000+999)
	id := fmt.Sprintf("q-%d", len(s.queries)+1)
	s.queries[id] = &query{status: "Complete", results: res, scanned: scanned}
	ok200(w, map[string]any{"queryId": id})
}

// runQuery runs plan over the events of groups between from and to (ms).
func (s *Server) runQuery(plan *plan, groups []string, from, to int64) ([][]map[string]string, int) {
	var rows []map[string]string
	scanned := 0
	for _, e := range s.events {
		if !contains(groups, e.Group) || e.Timestamp < from || e.Timestamp > to {
			continue
		}
		scanned++
		row := map[string]string{"@timestamp": time.UnixMilli(e.Timestamp).UTC().Format("2006-01-02 15:04:05.000"),
			"@logStream": e.Stream, "@message": e.Message, "@ptr": strconv.Itoa(len(rows))}
		flattenJSON(e.Message, row)
		if plan.keep(row) {
			rows = append(rows, row)
		}
	}
	return plan.run(rows), scanned
}

// Query runs a Logs Insights query over every event stored, as a test's
// shortcut to StartQuery and GetQueryResults: rows of field -> value.
func (s *Server) Query(t testing.TB, q string) []map[string]string {
	t.Helper()
	p, err := parse(q)
	if err != nil {
		t.Fatalf("query %q: %v", q, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var groups []string
	for g := range s.groups {
		groups = append(groups, g)
	}
	res, _ := s.runQuery(p, groups, 0, 1<<62)
	var out []map[string]string
	for _, r := range res {
		row := map[string]string{}
		for _, f := range r {
			row[f["field"]] = f["value"]
		}
		out = append(out, row)
	}
	return out
}

func (s *Server) getQueryResults(w http.ResponseWriter, id string) {
	q := s.queries[id]
	if q == nil {
		fail(w, 400, "ResourceNotFoundException", "query "+id+" not found")
		return
	}
	var results [][]map[string]string
	for _, r := range q.results {
		var row []map[string]string
		for _, f := range r {
			row = append(row, map[string]string{"field": f["field"], "value": f["value"]})
		}
		results = append(results, row)
	}
	ok200(w, map[string]any{"status": q.status, "results": results,
		"statistics": map[string]float64{"recordsMatched": float64(len(q.results)), "recordsScanned": float64(q.scanned)}})
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// MaxFields is how many fields Logs Insights extracts from a JSON event:
// "CloudWatch Logs Insights extracts a maximum of 200 log event fields
// from a JSON log" (AWS documentation, Supported logs and discovered
// fields). The stand-in keeps the first 200 in the order the event holds
// them, so a query that filters on a field an event holds beyond them
// does not see it, as on AWS.
const MaxFields = 200

// flattenJSON adds msg's fields to row, flattened with dots (data.cause;
// an array's elements as reasons.0, reasons.1), in document order, at
// most MaxFields of them. A message that is not a JSON object has none.
func flattenJSON(msg string, row map[string]string) {
	dec := json.NewDecoder(strings.NewReader(msg))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return
	}
	n := 0
	var walk func(prefix string, inArray bool) bool
	walk = func(prefix string, inArray bool) bool {
		for i := 0; dec.More(); i++ {
			key := strconv.Itoa(i)
			if !inArray {
				t, err := dec.Token()
				if err != nil {
					return false
				}
				key, _ = t.(string)
			}
			if prefix != "" {
				key = prefix + "." + key
			}
			t, err := dec.Token()
			if err != nil {
				return false
			}
			switch x := t.(type) {
			case json.Delim:
				if !walk(key, x == '[') {
					return false
				}
				dec.Token() // the closing delimiter
			case nil:
			default:
				if n >= MaxFields {
					continue
				}
				n++
				switch v := x.(type) {
				case string:
					row[key] = v
				case json.Number:
					row[key] = v.String()
				case bool:
					row[key] = strconv.FormatBool(v)
				}
			}
		}
		return true
	}
	walk("", false)
}

type cond struct {
	field, op string
	values    []string
}

// agg is one stats aggregation; earliest and latest go by @timestamp.
type agg struct{ fn, field, as string }

type plan struct {
	fields  []string
	filters []cond
	statsBy []string
	aggs    []agg
	sortBy  string
	desc    bool
	limit   int
}

func parse(q string) (*plan, error) {
	p := &plan{limit: 1000}
	for _, cmd := range strings.Split(q, "|") {
		cmd = strings.TrimSpace(cmd)
		word, rest, _ := strings.Cut(cmd, " ")
		rest = strings.TrimSpace(rest)
		switch word {
		case "fields":
			for _, f := range strings.Split(rest, ",") {
				p.fields = append(p.fields, strings.TrimSpace(f))
			}
		case "filter":
			for _, c := range strings.Split(rest, " and ") {
				cd, err := parseCond(strings.TrimSpace(c))
				if err != nil {
					return nil, err
				}
				p.filters = append(p.filters, cd)
			}
		case "stats":
			aggs, by, ok := strings.Cut(rest, " by ")
			if !ok {
				return nil, fmt.Errorf("stats: want AGG [as NAME], ... by FIELDS, got %q", rest)
			}
			for _, a := range strings.Split(aggs, ",") {
				fn, as, _ := strings.Cut(strings.TrimSpace(a), " as ")
				fn = strings.TrimSpace(fn)
				name, arg, ok := strings.Cut(strings.TrimSuffix(fn, ")"), "(")
				if !ok || !strings.HasSuffix(fn, ")") || !contains([]string{"count", "count_distinct", "earliest", "latest", "min", "max"}, name) || (name == "count") != (arg == "*") {
					return nil, fmt.Errorf("stats: only count(*), earliest(F), latest(F), min(F), max(F), got %q", fn)
				}
				if as = strings.TrimSpace(as); as == "" {
					as = fn
				}
				p.aggs = append(p.aggs, agg{fn: name, field: strings.TrimSpace(arg), as: as})
			}
			for _, f := range strings.Split(by, ",") {
				p.statsBy = append(p.statsBy, strings.TrimSpace(f))
			}
		case "sort":
			f, dir, _ := strings.Cut(rest, " ")
			p.sortBy, p.desc = f, strings.TrimSpace(dir) != "asc"
		case "limit":
			n, err := strconv.Atoi(rest)
			if err != nil || n < 1 || n > 10000 {
				return nil, fmt.Errorf("limit: want 1 to 10000, got %q", rest)
			}
			p.limit = n
		default:
			return nil, fmt.Errorf("unknown command %q", word)
		}
	}
	return p, nil
}

func parseCond(c string) (cond, error) {
	if f, ok := strings.CutPrefix(c, "ispresent("); ok && strings.HasSuffix(f, ")") {
		return cond{field: strings.TrimSpace(strings.TrimSuffix(f, ")")), op: "ispresent"}, nil
	}
	for _, op := range []string{"!=", "=", " in "} {
		if f, v, ok := strings.Cut(c, op); ok {
			cd := cond{field: strings.TrimSpace(f), op: strings.TrimSpace(op)}
			v = strings.TrimSpace(v)
			if cd.op == "in" {
				if !strings.HasPrefix(v, "[") || !strings.HasSuffix(v, "]") {
					return cd, fmt.Errorf("filter %q: in wants [\"a\", \"b\"]", c)
				}
				for _, x := range strings.Split(v[1:len(v)-1], ",") {
					u, err := strconv.Unquote(strings.TrimSpace(x))
					if err != nil {
						return cd, fmt.Errorf("filter %q: %v", c, err)
					}
					cd.values = append(cd.values, u)
				}
				return cd, nil
			}
			u, err := strconv.Unquote(v)
			if err != nil {
				return cd, fmt.Errorf("filter %q: want a quoted value", c)
			}
			cd.values = []string{u}
			return cd, nil
		}
	}
	return cond{}, fmt.Errorf("filter %q: want FIELD = \"VALUE\", != or in [...]", c)
}

func (p *plan) keep(row map[string]string) bool {
	for _, c := range p.filters {
		v, has := row[c.field]
		switch c.op {
		case "=":
			if !has || v != c.values[0] {
				return false
			}
		case "!=":
			if has && v == c.values[0] {
				return false
			}
		case "in":
			if !has || !contains(c.values, v) {
				return false
			}
		case "ispresent":
			if !has {
				return false
			}
		}
	}
	return true
}

func (p *plan) run(rows []map[string]string) [][]map[string]string {
	if len(p.statsBy) > 0 {
		groups := map[string][]map[string]string{}
		var order []string
		for _, r := range rows {
			var vs []string
			for _, f := range p.statsBy {
				vs = append(vs, r[f])
			}
			k := strings.Join(vs, "\x00")
			if groups[k] == nil {
				order = append(order, k)
			}
			groups[k] = append(groups[k], r)
		}
		rows = nil
		for _, k := range order {
			g := groups[k]
			out := map[string]string{}
			for _, f := range p.statsBy {
				if v, ok := g[0][f]; ok {
					out[f] = v
				}
			}
			for _, a := range p.aggs {
				if v, ok := a.apply(g); ok {
					out[a.as] = v
				}
			}
			rows = append(rows, out)
		}
		p.fields = append([]string(nil), p.statsBy...)
		for _, a := range p.aggs {
			p.fields = append(p.fields, a.as)
		}
	}
	if p.sortBy != "" {
		sort.SliceStable(rows, func(i, j int) bool {
			a, b := rows[i][p.sortBy], rows[j][p.sortBy]
			if x, err := strconv.ParseFloat(a, 64); err == nil {
				if y, err := strconv.ParseFloat(b, 64); err == nil {
					return (x > y) == p.desc && x != y
				}
			}
			return (a > b) == p.desc && a != b
		})
	}
	if len(rows) > p.limit {
		rows = rows[:p.limit]
	}
	fields := p.fields
	if len(fields) == 0 {
		fields = []string{"@timestamp", "@message"}
	}
	var out [][]map[string]string
	for _, r := range rows {
		var row []map[string]string
		for _, f := range fields {
			if v, ok := r[f]; ok {
				row = append(row, map[string]string{"field": f, "value": v})
			}
		}
		out = append(out, row)
	}
	return out
}

// apply computes the aggregation over one group's rows (in arrival order,
// which is time order for one stream); rows without the field are skipped.
func (a agg) apply(rows []map[string]string) (string, bool) {
	if a.fn == "count" {
		return strconv.Itoa(len(rows)), true
	}
	if a.fn == "count_distinct" {
		seen := map[string]bool{}
		for _, r := range rows {
			if v, ok := r[a.field]; ok {
				seen[v] = true
			}
		}
		return strconv.Itoa(len(seen)), true
	}
	best, bestT, found := "", "", false
	for _, r := range rows {
		v, ok := r[a.field]
		if !ok {
			continue
		}
		t := r["@timestamp"]
		better := !found
		switch a.fn {
		case "earliest":
			better = better || t < bestT
		case "latest":
			better = better || t >= bestT
		case "min", "max":
			x, err1 := strconv.ParseFloat(v, 64)
			y, err2 := strconv.ParseFloat(best, 64)
			if err1 == nil && err2 == nil {
				better = better || (a.fn == "min") == (x < y) && x != y
			} else {
				better = better || (a.fn == "min") == (v < best) && v != best
			}
		}
		if better {
			best, bestT, found = v, t, true
		}
	}
	return best, found
}
