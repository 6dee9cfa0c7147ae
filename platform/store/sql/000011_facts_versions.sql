-- Facts migrations (a workflow's `factsVersion` and `migrate`): the version of the facts schema an
-- instance's facts are in. An evaluation under a bundle whose workflow has a higher version first
-- runs the workflow's `migrate` on the facts, and writes them with the new version.
alter table praxis.instances add column facts_version int not null default 1;

-- A reprocessing run also reaches every instance of a workflow whose facts version the deploy
-- raised ({ workflow: version }): it is migrated in the background even where no rule fires.
alter table praxis.reprocessing add column migrate jsonb not null default '{}';
