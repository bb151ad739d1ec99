"""MLflow models-from-code entry of a crossmed export: MLflow runs this file to build the pyfunc model when loading it."""

from mlflow.models import set_model

from crossmed.export.pyfunc_model import CrossmedImageModel

set_model(CrossmedImageModel())
