package fakecw

import (
	"encoding/json"
	"maps"
	"net/http"
	"time"
)

// Alarm is what PutMetricAlarm stored, as decoded from the wire, so tests
// can check the request field by field.
type Alarm map[string]any

func (s *Server) putMetricAlarm(w http.ResponseWriter, body []byte) {
	var in map[string]any
	if err := dec.Unmarshal(body, &in); err != nil {
		s.fail(w, 400, "SerializationException", "", "cannot decode CBOR: "+err.Error())
		return
	}
	name, _ := in["AlarmName"].(string)
	if name == "" || in["ComparisonOperator"] == nil || in["EvaluationPeriods"] == nil {
		s.fail(w, 400, "MissingRequiredParameterException", "MissingParameter", "AlarmName, ComparisonOperator and EvaluationPeriods are required")
		return
	}
	s.mu.Lock()
	prev := s.alarms[name]
	state := "INSUFFICIENT_DATA"
	if prev != nil {
		state, _ = prev["StateValue"].(string) // an update keeps the state
	}
	in["StateValue"] = state
	in["StateUpdatedTimestamp"] = time.Now().UTC()
	s.alarms[name] = in
	s.puts++
	s.mu.Unlock()
	s.ok(w, nil)
}

// setActions serves EnableAlarmActions and DisableAlarmActions: as the
// service does, names of alarms that do not exist are passed over.
func (s *Server) setActions(w http.ResponseWriter, body []byte, enabled bool) {
	var in struct{ AlarmNames []string }
	if err := dec.Unmarshal(body, &in); err != nil {
		s.fail(w, 400, "SerializationException", "", "cannot decode CBOR: "+err.Error())
		return
	}
	s.mu.Lock()
	for _, n := range in.AlarmNames {
		if a := s.alarms[n]; a != nil {
			a["ActionsEnabled"] = enabled
		}
		s.actionCalls = append(s.actionCalls, ActionCall{Name: n, Enabled: enabled})
	}
	s.mu.Unlock()
	s.ok(w, nil)
}

// ActionCall is one Enable/DisableAlarmActions of an alarm.
type ActionCall struct {
	Name    string
	Enabled bool
}

// ActionCalls returns the Enable/DisableAlarmActions calls, in order.
func (s *Server) ActionCalls() []ActionCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ActionCall(nil), s.actionCalls...)
}

func (s *Server) describeAlarms(w http.ResponseWriter, body []byte) {
	var in struct{ AlarmNames []string }
	if err := dec.Unmarshal(body, &in); err != nil {
		// DescribeAlarms has many optional members; only names matter here.
		var loose map[string]any
		if err2 := dec.Unmarshal(body, &loose); err2 != nil {
			s.fail(w, 400, "SerializationException", "", "cannot decode CBOR: "+err.Error())
			return
		}
		for _, n := range asList(loose["AlarmNames"]) {
			if s, ok := n.(string); ok {
				in.AlarmNames = append(in.AlarmNames, s)
			}
		}
	}
	s.mu.Lock()
	var out []any
	for _, n := range in.AlarmNames {
		if a := s.alarms[n]; a != nil {
			out = append(out, map[string]any(a))
		}
	}
	s.mu.Unlock()
	s.ok(w, map[string]any{"MetricAlarms": out})
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// Alarms returns the stored alarms by name.
func (s *Server) Alarms() map[string]Alarm {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Alarm{}
	for k, v := range s.alarms {
		out[k] = v
	}
	return out
}

// AlarmPuts counts PutMetricAlarm calls (idempotency tests).
func (s *Server) AlarmPuts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.puts
}

// SetAlarmState sets a stored alarm's state, as CloudWatch would on data.
func (s *Server) SetAlarmState(name, state string) {
	s.mu.Lock()
	if a := s.alarms[name]; a != nil {
		a["StateValue"] = state
	}
	s.mu.Unlock()
}

func (s *Server) putDashboard(w http.ResponseWriter, body []byte) {
	var in struct{ DashboardName, DashboardBody string }
	if err := dec.Unmarshal(body, &in); err != nil {
		s.fail(w, 400, "SerializationException", "", "cannot decode CBOR: "+err.Error())
		return
	}
	var parsed struct {
		Widgets []map[string]any `json:"widgets"`
	}
	if in.DashboardName == "" || json.Unmarshal([]byte(in.DashboardBody), &parsed) != nil || len(parsed.Widgets) == 0 {
		s.fail(w, 400, "InvalidParameterInput", "InvalidParameterInput", "The field DashboardBody must be a valid JSON object with widgets")
		return
	}
	s.mu.Lock()
	s.dashboards[in.DashboardName] = in.DashboardBody
	s.mu.Unlock()
	s.ok(w, map[string]any{"DashboardValidationMessages": []any{}})
}

// Dashboards returns stored dashboard bodies by name.
func (s *Server) Dashboards() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.dashboards)
}
