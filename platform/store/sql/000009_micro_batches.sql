-- Micro-batches: `ctx.callEach(fn, inputs, { batchSize })` queues its invocations in jobs of up to
-- batchSize items. Each item is still its own invocation (its own result, reaction or error, and
-- retries); batch_no numbers the job it was queued in, within the evaluation that made the call
-- (null: a job of its own). The step write groups the new invocations by it (platform/queue).
alter table praxis.invocations add column batch_no int;

-- Deferred calls (`ctx.call(fn, input, { deferUntilMs })`): the invocation may wait until
-- `defer_until` for idle capacity. Its job is queued at the lowest priority (it runs when nothing
-- else waits), and a due job raises it to its own priority when the deadline comes close.
alter table praxis.invocations add column defer_until timestamptz;
