"""The Capstan control plane: Git source, store, API, controllers, scheduler, node connections."""
