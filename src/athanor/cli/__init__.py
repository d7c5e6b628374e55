"""The command line: `train`, `evaluate` and `athanor …`, plus Hydra's resolvers. The only
package that imports hydra or omegaconf; it converts the composed config once to plain data."""
