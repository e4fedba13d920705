"""Azure Functions entry point (Python v2 model): wiring only; the work is in ``chargeback``.

``on_usage_events`` receives batches of APIM usage events from Event Hub and hands them to
``chargeback.wiring.handle_event_hub_batch``, which writes every event to the usage table or the
dead-letter store. It raises only when neither could take an event; the retry policy then holds
the Event Hub checkpoint, so the batch is delivered again instead of lost.
"""

from __future__ import annotations

import azure.functions as func

from chargeback import wiring as runtime

app = func.FunctionApp()


@app.function_name("on_usage_events")
@app.retry(
    strategy="exponential_backoff",
    max_retry_count="-1",  # retry until the batch is persisted: never checkpoint past a lost event
    minimum_interval="00:00:05",
    maximum_interval="00:10:00",
)
@app.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="%EVENTHUB_NAME%",
    connection="EVENTHUB",
    cardinality="many",
    consumer_group="%EVENTHUB_CONSUMER_GROUP%",
)
def on_usage_events(events: list[func.EventHubEvent]) -> None:
    """Price and store one batch of usage events."""
    runtime.handle_event_hub_batch(events)


@app.function_name("monthly_rollup")
@app.timer_trigger(arg_name="timer", schedule="0 30 2 * * *", run_on_startup=False, use_monitor=True)
def monthly_rollup(timer: func.TimerRequest) -> None:
    """Publish last month's FOCUS and finance CSVs once ROLLUP_GRACE_HOURS have passed.

    Runs daily at 02:30 UTC and does nothing once the month is published (idempotent), so a grace
    period longer than a day, or a missed run, only delays the statement.
    """
    runtime.handle_monthly_rollup()


@app.function_name("daily_budget_check")
@app.timer_trigger(arg_name="timer", schedule="0 0 6 * * *", run_on_startup=False, use_monitor=True)
def daily_budget_check(timer: func.TimerRequest) -> None:
    """Check month-to-date spend and forecasts against budgets; raise new alerts."""
    runtime.handle_budget_check()


@app.function_name("gateway_usage")
@app.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=False, use_monitor=True)
def gateway_usage(timer: func.TimerRequest) -> None:
    """Every 5 minutes: streams charged on an estimate get APIM's LLM-log counts as a new revision.

    Looks back GATEWAY_LOG_WAIT_MINUTES; idempotent (a revision is written once), so an overlap or
    a missed run only delays the counts.
    """
    runtime.handle_gateway_usage()


@app.function_name("hourly_budget_enforcement")
@app.timer_trigger(arg_name="timer", schedule="0 15 * * * *", run_on_startup=False, use_monitor=True)
def hourly_budget_enforcement(timer: func.TimerRequest) -> None:
    """Apply and lift budget actions (throttle, suspend) hourly; a no-op unless BUDGET_ENFORCEMENT=on."""
    runtime.handle_budget_enforcement()
