"""hypermodels"""
