"""EventBridge on Lamina: Scheduler schedules, event buses and rules over one timer heap, with targets reached
through a Sender the server composes (functions by async invoke, queues, buses). Imports only leaves (store,
eventpattern); the api/ routes and the events/ targets sit above it."""
