"""TaskFlow: ``@task.llm_batch`` (registered through the provider info's ``task-decorators``)."""
