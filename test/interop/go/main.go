// Interop client for the Orchestrator server, written with grpc-go and stubs generated from
// proto/ at test time (see buf.gen.yaml). Run by test/interop/go.test.ts against a server started
// with --demo-operations and --auth none (every caller is the local admin):
//
//	go run . 127.0.0.1:PORT
//
// It checks health; streams Execute of demo.echo and reads the execution back with GetExecution;
// decodes the google.rpc.ErrorInfo and BadRequest details of the errors (unknown execution, bad
// input); and checks that GetSchedule of an unknown schedule answers NOT_FOUND with reason
// SCHEDULE_NOT_FOUND. It prints one JSON summary line on stdout and exits 1 on any mismatch
// (each one reported on stderr).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	orchestratorv1 "orchestrator.test/interop/gen/orchestrator/v1"
)

type rpcResult struct {
	Code       string            `json:"code"`
	Message    string            `json:"message"`
	Reason     string            `json:"reason"`
	Domain     string            `json:"domain"`
	Metadata   map[string]string `json:"metadata"`
	Violations []string          `json:"violations"`
}

type executeResult struct {
	Events   []string `json:"events"`
	Result   any      `json:"result"`
	Attempts int32    `json:"attempts"`
}

type getResult struct {
	State    string `json:"state"`
	Result   any    `json:"result"`
	Attempts int    `json:"attempts"`
}

type summary struct {
	Health              string        `json:"health"`
	Execute             executeResult `json:"execute"`
	GetExecution        getResult     `json:"get_execution"`
	GetExecutionUnknown rpcResult     `json:"get_execution_unknown"`
	ExecuteInvalid      rpcResult     `json:"execute_invalid"`
	GetSchedule         rpcResult     `json:"get_schedule"`
	Failures            []string      `json:"failures"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run . HOST:PORT")
		os.Exit(2)
	}
	out := run(os.Args[1])
	line, err := json.Marshal(out)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println(string(line))
	if len(out.Failures) > 0 {
		for _, f := range out.Failures {
			fmt.Fprintln(os.Stderr, "mismatch:", f)
		}
		os.Exit(1)
	}
}

// eventKind names the case of ExecutionEvent.kind as in the .proto file.
func eventKind(e *orchestratorv1.ExecutionEvent) string {
	switch e.GetKind().(type) {
	case *orchestratorv1.ExecutionEvent_Accepted:
		return "accepted"
	case *orchestratorv1.ExecutionEvent_AttemptStarted:
		return "attempt_started"
	case *orchestratorv1.ExecutionEvent_AttemptFailed:
		return "attempt_failed"
	case *orchestratorv1.ExecutionEvent_Progress:
		return "progress"
	case *orchestratorv1.ExecutionEvent_Succeeded:
		return "succeeded"
	case *orchestratorv1.ExecutionEvent_Failed:
		return "failed"
	case *orchestratorv1.ExecutionEvent_Cancelled:
		return "cancelled"
	case *orchestratorv1.ExecutionEvent_TimedOut:
		return "timed_out"
	case *orchestratorv1.ExecutionEvent_Interrupted:
		return "interrupted"
	case nil:
		return "(unset)"
	default:
		return fmt.Sprintf("(unknown %T)", e.GetKind())
	}
}

// readAll receives the stream to its end: the events, and the error (nil when it ended OK).
func readAll(stream grpc.ServerStreamingClient[orchestratorv1.ExecuteResponse]) ([]*orchestratorv1.ExecutionEvent, error) {
	var events []*orchestratorv1.ExecutionEvent
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return events, nil
		}
		if err != nil {
			return events, err
		}
		events = append(events, msg.GetEvent())
	}
}

func run(address string) summary {
	s := summary{Failures: []string{}}
	fail := func(format string, args ...any) { s.Failures = append(s.Failures, fmt.Sprintf(format, args...)) }

	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail("dial %s: %v", address, err)
		return s
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Unary health Check of the server as a whole.
	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: ""})
	if err != nil {
		fail("health Check: %v", err)
	} else {
		s.Health = hc.GetStatus().String()
		if hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			fail("health Check: status %s, want SERVING", s.Health)
		}
	}

	executions := orchestratorv1.NewExecutionServiceClient(conn)

	// Server streaming: Execute demo.echo with a Struct input, read to the end of the stream.
	input, err := structpb.NewStruct(map[string]any{"message": "hi"})
	if err != nil {
		fail("structpb: %v", err)
		return s
	}
	executionID := ""
	stream, err := executions.Execute(ctx, &orchestratorv1.ExecuteRequest{Operation: "demo.echo", Input: input})
	var events []*orchestratorv1.ExecutionEvent
	if err == nil {
		events, err = readAll(stream)
	}
	if err != nil {
		fail("Execute: %v", err)
	}
	s.Execute.Events = []string{}
	for _, e := range events {
		s.Execute.Events = append(s.Execute.Events, eventKind(e))
	}
	if !slices.Equal(s.Execute.Events, []string{"accepted", "attempt_started", "succeeded"}) {
		fail("Execute: events %v, want [accepted attempt_started succeeded]", s.Execute.Events)
	} else {
		executionID = events[0].GetAccepted().GetExecution().GetExecutionId()
		for _, e := range events {
			if executionID == "" || e.GetExecutionId() != executionID {
				fail("Execute: event execution_id %q, want %q", e.GetExecutionId(), executionID)
			}
		}
		if n := events[1].GetAttemptStarted().GetAttempt(); n != 1 {
			fail("Execute: attempt_started.attempt %d, want 1", n)
		}
		succeeded := events[2].GetSucceeded()
		s.Execute.Result = succeeded.GetResult().AsInterface()
		s.Execute.Attempts = succeeded.GetAttempts()
	}

	// Unary: GetExecution of that execution.
	if executionID != "" {
		got, err := executions.GetExecution(ctx, &orchestratorv1.GetExecutionRequest{ExecutionId: executionID})
		if err != nil {
			fail("GetExecution: %v", err)
		} else {
			x := got.GetExecution()
			s.GetExecution = getResult{State: x.GetState().String(), Result: x.GetResult().AsInterface(), Attempts: len(x.GetAttempts())}
			if x.GetExecutionId() != executionID {
				fail("GetExecution: execution_id %q, want %q", x.GetExecutionId(), executionID)
			}
		}
	}

	// Unary: GetExecution of an unknown id.
	_, err = executions.GetExecution(ctx, &orchestratorv1.GetExecutionRequest{ExecutionId: "no-such-execution"})
	s.GetExecutionUnknown = describe(err)
	expectError("GetExecution (unknown id)", err, s.GetExecutionUnknown, codes.NotFound, "EXECUTION_NOT_FOUND", fail)

	// Server streaming: an input that does not match demo.echo's schema; the stream ends with
	// the status before any message.
	bad, err := structpb.NewStruct(map[string]any{"message": 5.0})
	if err != nil {
		fail("structpb: %v", err)
		return s
	}
	stream, err = executions.Execute(ctx, &orchestratorv1.ExecuteRequest{Operation: "demo.echo", Input: bad})
	if err == nil {
		events, err = readAll(stream)
		for _, e := range events {
			fail("Execute (bad input): unexpected event %s", eventKind(e))
		}
		if err == nil {
			fail("Execute (bad input): stream ended OK, want InvalidArgument")
		}
	}
	s.ExecuteInvalid = describe(err)
	expectError("Execute (bad input)", err, s.ExecuteInvalid, codes.InvalidArgument, "INVALID_ARGUMENT", fail)

	// Unary: a ScheduleService RPC on a schedule that does not exist.
	_, err = orchestratorv1.NewScheduleServiceClient(conn).GetSchedule(ctx, &orchestratorv1.GetScheduleRequest{ScheduleId: "x"})
	s.GetSchedule = describe(err)
	expectError("GetSchedule", err, s.GetSchedule, codes.NotFound, "SCHEDULE_NOT_FOUND", fail)
	return s
}

// describe reads the status of a failed call, decoding the google.rpc.ErrorInfo and
// google.rpc.BadRequest details (grpc-status-details-bin).
func describe(err error) rpcResult {
	st, _ := status.FromError(err)
	r := rpcResult{Code: st.Code().String(), Message: st.Message(), Metadata: map[string]string{}, Violations: []string{}}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			r.Reason = d.GetReason()
			r.Domain = d.GetDomain()
			for k, v := range d.GetMetadata() {
				r.Metadata[k] = v
			}
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				r.Violations = append(r.Violations, v.GetField())
			}
		case error:
			r.Violations = append(r.Violations, "undecodable detail: "+d.Error())
		}
	}
	return r
}

func expectError(rpc string, err error, r rpcResult, code codes.Code, reason string, fail func(string, ...any)) {
	if status.Code(err) != code {
		fail("%s: code %s (%v), want %s", rpc, r.Code, err, code)
	}
	if r.Reason != reason || r.Domain != "orchestrator.v1" {
		fail("%s: ErrorInfo reason %q domain %q, want %s / orchestrator.v1", rpc, r.Reason, r.Domain, reason)
	}
}
