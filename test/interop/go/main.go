// Interop client for the Orchestrator server, written with grpc-go and stubs generated from
// proto/ at test time (see buf.gen.yaml). Run by test/interop/go.test.ts:
//
//	go run . 127.0.0.1:PORT
//
// It checks health, then that the orchestrator RPCs that have not landed answer UNIMPLEMENTED
// with a google.rpc.ErrorInfo detail (reason NOT_IMPLEMENTED). It prints one JSON summary line
// on stdout and exits 1 on any mismatch (each one reported on stderr).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
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
	Code    string `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
	Domain  string `json:"domain"`
}

type summary struct {
	Health       string    `json:"health"`
	GetExecution rpcResult `json:"get_execution"`
	Execute      rpcResult `json:"execute"`
	Failures     []string  `json:"failures"`
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

	// Unary: GetExecution.
	_, err = executions.GetExecution(ctx, &orchestratorv1.GetExecutionRequest{ExecutionId: "x"})
	s.GetExecution = describe(err)
	expectNotImplemented("GetExecution", err, s.GetExecution, fail)
	if !strings.Contains(s.GetExecution.Message, "issue #3") {
		fail("GetExecution: message %q does not name issue #3", s.GetExecution.Message)
	}

	// Server streaming: Execute with a Struct input; the stream ends with the status.
	input, err := structpb.NewStruct(map[string]any{"message": "hi", "n": 1.0})
	if err != nil {
		fail("structpb: %v", err)
		return s
	}
	stream, err := executions.Execute(ctx, &orchestratorv1.ExecuteRequest{Operation: "demo.echo", Input: input})
	if err == nil {
		for {
			var msg *orchestratorv1.ExecuteResponse
			msg, err = stream.Recv()
			if err != nil {
				break
			}
			fail("Execute: unexpected message %v", msg)
		}
	}
	if errors.Is(err, io.EOF) {
		fail("Execute: stream ended OK, want UNIMPLEMENTED")
	}
	s.Execute = describe(err)
	expectNotImplemented("Execute", err, s.Execute, fail)
	return s
}

// describe reads the status of a failed call, decoding the google.rpc.ErrorInfo detail
// (grpc-status-details-bin).
func describe(err error) rpcResult {
	st, _ := status.FromError(err)
	r := rpcResult{Code: st.Code().String(), Message: st.Message()}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			r.Reason = info.GetReason()
			r.Domain = info.GetDomain()
		}
	}
	return r
}

func expectNotImplemented(rpc string, err error, r rpcResult, fail func(string, ...any)) {
	if status.Code(err) != codes.Unimplemented {
		fail("%s: code %s (%v), want Unimplemented", rpc, r.Code, err)
	}
	if r.Reason != "NOT_IMPLEMENTED" || r.Domain != "orchestrator.v1" {
		fail("%s: ErrorInfo reason %q domain %q, want NOT_IMPLEMENTED / orchestrator.v1", rpc, r.Reason, r.Domain)
	}
}
