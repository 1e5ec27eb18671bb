// Package alarm builds and applies the CloudWatch alarms that reboot (or
// recover) an instance whose status checks fail: the alarm users set up
// by hand or in Terraform today, done from the instance and idempotently.
package alarm

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
)

// Request is a PutMetricAlarm request; JSON field names are the API's.
type Request struct {
	AlarmName          string      `json:"AlarmName"`
	AlarmDescription   string      `json:"AlarmDescription"`
	Namespace          string      `json:"Namespace"`
	MetricName         string      `json:"MetricName"`
	Dimensions         []Dimension `json:"Dimensions"`
	Statistic          string      `json:"Statistic"`
	Period             int32       `json:"Period"`
	EvaluationPeriods  int32       `json:"EvaluationPeriods"`
	DatapointsToAlarm  int32       `json:"DatapointsToAlarm,omitempty"`
	Threshold          float64     `json:"Threshold"`
	ComparisonOperator string      `json:"ComparisonOperator"`
	TreatMissingData   string      `json:"TreatMissingData"`
	AlarmActions       []string    `json:"AlarmActions"`
	ActionsEnabled     bool        `json:"ActionsEnabled"`
}

// Dimension is a CloudWatch dimension.
type Dimension struct {
	Name  string `json:"Name"`
	Value string `json:"Value"`
}

// Options choose the alarms.
type Options struct {
	InstanceID string
	Region     string
	// Recover installs AWS's recommended pair instead of the single
	// alarm: reboot on StatusCheckFailed_Instance (3 x 60 s) and recover
	// on StatusCheckFailed_System (2 x 60 s). The counts differ so the two
	// actions do not race.
	Recover bool
	// SNSTopic, if set, is notified too.
	SNSTopic string
	// Stalled adds the liveness alarm: reboot when the agent's Stalled
	// figure is 1, or missing (the agent cannot publish), in M of N
	// periods. EC2's status checks are the hypervisor's reachability
	// probe, which a kernel answers while its user space is livelocked:
	// the status-check alarm may never fire for the hangs ec2diag is for.
	Stalled *Liveness
}

// Liveness configures the liveness alarm. Its metric must be the one the
// agent publishes: its namespace and dimensions (InstanceId and
// cloudwatch.dimensions), at the agent's period.
type Liveness struct {
	Namespace  string
	Dimensions []Dimension // besides InstanceId
	Period     int32       // seconds (cloudwatch.period)
	// DatapointsToAlarm of EvaluationPeriods (M of N): N covers a restart
	// or an upgrade (a minute or two without data) without a reboot.
	DatapointsToAlarm, EvaluationPeriods int32
}

// DefaultLiveness is 3 of 5 one-minute periods: a restart costs one or
// two, a hang is rebooted after about three minutes without the figure.
func DefaultLiveness(namespace string) *Liveness {
	return &Liveness{Namespace: namespace, Period: 60, DatapointsToAlarm: 3, EvaluationPeriods: 5}
}

// Build returns the requests for o.
func Build(o Options) ([]Request, error) {
	if !strings.HasPrefix(o.InstanceID, "i-") {
		return nil, fmt.Errorf("instance id %q does not look like i-...", o.InstanceID)
	}
	if o.Region == "" {
		return nil, fmt.Errorf("no region")
	}
	if o.SNSTopic != "" && !strings.HasPrefix(o.SNSTopic, "arn:") {
		return nil, fmt.Errorf("SNS topic %q is not an ARN", o.SNSTopic)
	}
	actions := func(a string) []string {
		out := []string{"arn:aws:automate:" + o.Region + ":ec2:" + a}
		if o.SNSTopic != "" {
			out = append(out, o.SNSTopic)
		}
		return out
	}
	base := Request{
		Namespace: "AWS/EC2", Dimensions: []Dimension{{"InstanceId", o.InstanceID}}, Statistic: "Maximum",
		Threshold: 1, ComparisonOperator: "GreaterThanOrEqualToThreshold", TreatMissingData: "notBreaching", ActionsEnabled: true,
	}
	var live []Request
	if l := o.Stalled; l != nil {
		if l.Namespace == "" || l.Period <= 0 || l.DatapointsToAlarm <= 0 || l.EvaluationPeriods < l.DatapointsToAlarm {
			return nil, fmt.Errorf("liveness alarm: want a namespace, a period and 1 <= M <= N periods")
		}
		r := base
		r.AlarmName = StalledName(o.InstanceID)
		r.AlarmDescription = fmt.Sprintf("Reboot %s when ec2diag says it is stalled, or cannot say (no data), in %d of %d periods; "+
			"the agent disables these actions when it is stopped on purpose (installed by ec2diag alarm install)", o.InstanceID, l.DatapointsToAlarm, l.EvaluationPeriods)
		r.Namespace, r.MetricName, r.Period, r.EvaluationPeriods, r.DatapointsToAlarm = l.Namespace, "Stalled", l.Period, l.EvaluationPeriods, l.DatapointsToAlarm
		r.Dimensions = append([]Dimension{{"InstanceId", o.InstanceID}}, l.Dimensions...)
		r.TreatMissingData = "breaching"
		r.AlarmActions = actions("reboot")
		live = append(live, r)
	}
	if !o.Recover {
		r := base
		r.AlarmName = RebootName(o.InstanceID)
		r.AlarmDescription = "Reboot " + o.InstanceID + " when a status check fails (installed by ec2diag alarm install)"
		r.MetricName, r.Period, r.EvaluationPeriods = "StatusCheckFailed", 300, 1
		r.AlarmActions = actions("reboot")
		return append([]Request{r}, live...), nil
	}
	reboot := base
	reboot.AlarmName = RebootName(o.InstanceID)
	reboot.AlarmDescription = "Reboot " + o.InstanceID + " when the instance status check fails for 3 minutes (installed by ec2diag alarm install --recover)"
	reboot.MetricName, reboot.Period, reboot.EvaluationPeriods = "StatusCheckFailed_Instance", 60, 3
	reboot.AlarmActions = actions("reboot")
	recover := base
	recover.AlarmName = "ec2diag-recover-" + o.InstanceID
	recover.AlarmDescription = "Recover " + o.InstanceID + " onto healthy hardware when the system status check fails for 2 minutes (installed by ec2diag alarm install --recover)"
	recover.MetricName, recover.Period, recover.EvaluationPeriods = "StatusCheckFailed_System", 60, 2
	recover.AlarmActions = actions("recover")
	return append([]Request{reboot, recover}, live...), nil
}

// Input converts a request for the SDK.
func (r Request) Input() *cloudwatch.PutMetricAlarmInput {
	in := &cloudwatch.PutMetricAlarmInput{
		AlarmName: aws.String(r.AlarmName), AlarmDescription: aws.String(r.AlarmDescription),
		Namespace: aws.String(r.Namespace), MetricName: aws.String(r.MetricName),
		Statistic: types.Statistic(r.Statistic), Period: aws.Int32(r.Period), EvaluationPeriods: aws.Int32(r.EvaluationPeriods),
		Threshold: aws.Float64(r.Threshold), ComparisonOperator: types.ComparisonOperator(r.ComparisonOperator),
		TreatMissingData: aws.String(r.TreatMissingData), AlarmActions: r.AlarmActions, ActionsEnabled: aws.Bool(r.ActionsEnabled),
	}
	if r.DatapointsToAlarm > 0 {
		in.DatapointsToAlarm = aws.Int32(r.DatapointsToAlarm)
	}
	for _, d := range r.Dimensions {
		in.Dimensions = append(in.Dimensions, types.Dimension{Name: aws.String(d.Name), Value: aws.String(d.Value)})
	}
	return in
}

// FromAlarm reads back what CloudWatch holds, in the same shape, so the
// two can be compared.
func FromAlarm(a types.MetricAlarm) Request {
	r := Request{
		AlarmName: aws.ToString(a.AlarmName), AlarmDescription: aws.ToString(a.AlarmDescription),
		Namespace: aws.ToString(a.Namespace), MetricName: aws.ToString(a.MetricName), Statistic: string(a.Statistic),
		Period: aws.ToInt32(a.Period), EvaluationPeriods: aws.ToInt32(a.EvaluationPeriods), DatapointsToAlarm: aws.ToInt32(a.DatapointsToAlarm),
		Threshold: aws.ToFloat64(a.Threshold), ComparisonOperator: string(a.ComparisonOperator),
		TreatMissingData: aws.ToString(a.TreatMissingData), AlarmActions: a.AlarmActions, ActionsEnabled: aws.ToBool(a.ActionsEnabled),
	}
	for _, d := range a.Dimensions {
		r.Dimensions = append(r.Dimensions, Dimension{aws.ToString(d.Name), aws.ToString(d.Value)})
	}
	return r
}

// Same reports whether an existing alarm already matches the request.
// Action order does not matter to CloudWatch, so it does not here.
func Same(want, have Request) bool {
	norm := func(r Request) Request {
		r.AlarmActions = append([]string(nil), r.AlarmActions...)
		sort.Strings(r.AlarmActions)
		if r.DatapointsToAlarm == r.EvaluationPeriods {
			r.DatapointsToAlarm = 0 // CloudWatch may echo the default
		}
		return r
	}
	return reflect.DeepEqual(norm(want), norm(have))
}

// API is what Apply and Status call; *cloudwatch.Client satisfies it.
type API interface {
	PutMetricAlarm(ctx context.Context, in *cloudwatch.PutMetricAlarmInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricAlarmOutput, error)
	DescribeAlarms(ctx context.Context, in *cloudwatch.DescribeAlarmsInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.DescribeAlarmsOutput, error)
}

// Result says what Apply did with one alarm.
type Result struct {
	AlarmName string `json:"alarm_name"`
	Action    string `json:"action"` // created, updated, unchanged
}

// Apply creates or updates each alarm, skipping those already as wanted:
// PutMetricAlarm on an existing name replaces its whole configuration,
// so an unchanged alarm is not touched at all.
func Apply(ctx context.Context, api API, reqs []Request) ([]Result, error) {
	have, err := describe(ctx, api, reqs)
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, r := range reqs {
		cur, ok := have[r.AlarmName]
		switch {
		case ok && Same(r, FromAlarm(cur)):
			out = append(out, Result{r.AlarmName, "unchanged"})
			continue
		case ok:
			out = append(out, Result{r.AlarmName, "updated"})
		default:
			out = append(out, Result{r.AlarmName, "created"})
		}
		if _, err := api.PutMetricAlarm(ctx, r.Input()); err != nil {
			return out[:len(out)-1], fmt.Errorf("PutMetricAlarm %s: %w", r.AlarmName, err)
		}
	}
	return out, nil
}

// State is an alarm's current state.
type State struct {
	AlarmName string `json:"alarm_name"`
	Exists    bool   `json:"exists"`
	State     string `json:"state,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Updated   string `json:"updated,omitempty"`
	Matches   bool   `json:"matches_config"`
}

// Status reports the alarms' states.
func Status(ctx context.Context, api API, reqs []Request) ([]State, error) {
	have, err := describe(ctx, api, reqs)
	if err != nil {
		return nil, err
	}
	var out []State
	for _, r := range reqs {
		s := State{AlarmName: r.AlarmName}
		if a, ok := have[r.AlarmName]; ok {
			s.Exists, s.State, s.Reason, s.Matches = true, string(a.StateValue), aws.ToString(a.StateReason), Same(r, FromAlarm(a))
			if a.StateUpdatedTimestamp != nil {
				s.Updated = a.StateUpdatedTimestamp.UTC().Format("2006-01-02T15:04:05Z")
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func describe(ctx context.Context, api API, reqs []Request) (map[string]types.MetricAlarm, error) {
	var names []string
	for _, r := range reqs {
		names = append(names, r.AlarmName)
	}
	out, err := api.DescribeAlarms(ctx, &cloudwatch.DescribeAlarmsInput{AlarmNames: names})
	if err != nil {
		return nil, fmt.Errorf("DescribeAlarms: %w", err)
	}
	have := map[string]types.MetricAlarm{}
	for _, a := range out.MetricAlarms {
		have[aws.ToString(a.AlarmName)] = a
	}
	return have, nil
}

// Terraform renders the requests as the aws_cloudwatch_metric_alarm
// resources users keep in their repositories today.
func Terraform(reqs []Request) string {
	var b strings.Builder
	for i, r := range reqs {
		if i > 0 {
			b.WriteString("\n")
		}
		name := strings.NewReplacer("-", "_").Replace(strings.TrimSuffix(r.AlarmName, "-"+r.Dimensions[0].Value))
		fmt.Fprintf(&b, "resource \"aws_cloudwatch_metric_alarm\" %q {\n", name)
		fmt.Fprintf(&b, "  alarm_name          = %q\n", r.AlarmName)
		fmt.Fprintf(&b, "  alarm_description   = %q\n", r.AlarmDescription)
		fmt.Fprintf(&b, "  namespace           = %q\n", r.Namespace)
		fmt.Fprintf(&b, "  metric_name         = %q\n", r.MetricName)
		fmt.Fprintf(&b, "  statistic           = %q\n", r.Statistic)
		fmt.Fprintf(&b, "  period              = %d\n", r.Period)
		fmt.Fprintf(&b, "  evaluation_periods  = %d\n", r.EvaluationPeriods)
		if r.DatapointsToAlarm > 0 {
			fmt.Fprintf(&b, "  datapoints_to_alarm = %d\n", r.DatapointsToAlarm)
		}
		fmt.Fprintf(&b, "  threshold           = %g\n", r.Threshold)
		fmt.Fprintf(&b, "  comparison_operator = %q\n", r.ComparisonOperator)
		fmt.Fprintf(&b, "  treat_missing_data  = %q\n", r.TreatMissingData)
		fmt.Fprintf(&b, "  actions_enabled     = %t\n", r.ActionsEnabled)
		var acts []string
		for _, a := range r.AlarmActions {
			acts = append(acts, fmt.Sprintf("%q", a))
		}
		fmt.Fprintf(&b, "  alarm_actions       = [%s]\n", strings.Join(acts, ", "))
		b.WriteString("  dimensions = {\n")
		for _, d := range r.Dimensions {
			fmt.Fprintf(&b, "    %s = %q\n", d.Name, d.Value)
		}
		b.WriteString("  }\n}\n")
	}
	return b.String()
}

// StalledName is the liveness alarm's name for an instance.
func StalledName(instanceID string) string { return "ec2diag-stalled-" + instanceID }

// ActionsAPI is what SetActions calls; *cloudwatch.Client satisfies it.
type ActionsAPI interface {
	EnableAlarmActions(ctx context.Context, in *cloudwatch.EnableAlarmActionsInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.EnableAlarmActionsOutput, error)
	DisableAlarmActions(ctx context.Context, in *cloudwatch.DisableAlarmActionsInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.DisableAlarmActionsOutput, error)
}

// SetActions enables or disables an alarm's actions: the daemon disables
// its liveness alarm's when it is stopped on purpose (a shutdown, an
// upgrade, systemctl stop, removal) and enables them when it starts, so
// only an agent that cannot publish makes the figure go missing.
func SetActions(ctx context.Context, api ActionsAPI, name string, enabled bool) error {
	var err error
	if enabled {
		_, err = api.EnableAlarmActions(ctx, &cloudwatch.EnableAlarmActionsInput{AlarmNames: []string{name}})
	} else {
		_, err = api.DisableAlarmActions(ctx, &cloudwatch.DisableAlarmActionsInput{AlarmNames: []string{name}})
	}
	return err
}

// RebootName is the reboot alarm's name for an instance (the dashboard
// shows its state).
func RebootName(instanceID string) string { return "ec2diag-reboot-" + instanceID }
