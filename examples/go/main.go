// A Go client of the Orchestrator, with grpc-go and stubs generated from proto/ by buf (see
// buf.gen.yaml). Against a server started with --demo-operations:
//
//	ORCHESTRATOR_ADDRESS=127.0.0.1:50051 ORCHESTRATOR_TOKEN=ork_… go run .
//
// It checks health, runs demo.echo and follows its events, reads the execution back, and shows
// how to read an error's details (google.rpc.ErrorInfo, BadRequest). Run by
// test/examples/examples.test.ts.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	orchestratorv1 "orchestrator.example/client/gen/orchestrator/v1"
)

func main() {
	address := os.Getenv("ORCHESTRATOR_ADDRESS")
	if address == "" {
		address = "127.0.0.1:50051"
	}
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Every call carries the API key (or JWT) as a bearer token.
	if token := os.Getenv("ORCHESTRATOR_TOKEN"); token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}

	health, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("health", health.GetStatus())

	executions := orchestratorv1.NewExecutionServiceClient(conn)

	// Execute streams the execution's events and ends with the terminal one.
	input, _ := structpb.NewStruct(map[string]any{"message": "hello from Go"})
	stream, err := executions.Execute(ctx, &orchestratorv1.ExecuteRequest{Operation: "demo.echo", Input: input})
	if err != nil {
		log.Fatal(err)
	}
	var executionID string
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		event := msg.GetEvent()
		switch kind := event.GetKind().(type) {
		case *orchestratorv1.ExecutionEvent_Accepted:
			executionID = event.GetExecutionId()
			fmt.Println("event accepted", executionID)
		case *orchestratorv1.ExecutionEvent_AttemptStarted:
			fmt.Println("event attempt_started")
		case *orchestratorv1.ExecutionEvent_Succeeded:
			result, _ := json.Marshal(kind.Succeeded.GetResult().AsInterface())
			fmt.Println("event succeeded", string(result))
		case *orchestratorv1.ExecutionEvent_Failed:
			fmt.Println("event failed", kind.Failed.GetError().GetType(), kind.Failed.GetError().GetMessage())
		default:
			fmt.Printf("event %T\n", kind)
		}
	}

	got, err := executions.GetExecution(ctx, &orchestratorv1.GetExecutionRequest{ExecutionId: executionID})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("execution", executionID, got.GetExecution().GetState(), fmt.Sprintf("attempts=%d", len(got.GetExecution().GetAttempts())))

	// Errors carry google.rpc details; status.FromError decodes them.
	badInput, _ := structpb.NewStruct(map[string]any{"wrong": "field"})
	bad, err := executions.Execute(ctx, &orchestratorv1.ExecuteRequest{Operation: "demo.echo", Input: badInput})
	if err == nil {
		_, err = bad.Recv()
	}
	st, _ := status.FromError(err)
	reason, fields := "", []string{}
	for _, d := range st.Details() {
		switch detail := d.(type) {
		case *errdetails.ErrorInfo:
			reason = detail.GetReason()
		case *errdetails.BadRequest:
			for _, v := range detail.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	fmt.Println("error", st.Code(), "reason="+reason, "violations="+strings.Join(fields, ","))
}
