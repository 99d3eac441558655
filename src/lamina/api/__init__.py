"""The AWS REST APIs (Lambda, Lambda MicroVMs, Lamina's own /lamina/v1) as Starlette routes: requests parsed and
answered here, every operation done by the function core (functions/) or the MicroVM manager. Routes only."""
